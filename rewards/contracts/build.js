// Compiles src/*.sol with solc from npm (the version package.json pins) into
// out/NAME.json ({"abi", "bytecode"}), which the processor embeds. The EVM
// target is shanghai: ganache 7.9 (the local chain of the tests and the
// demo) runs up to it, and every chain a user would settle on runs it.
// `node build.js --check` fails when out/ differs from what src/ compiles to.
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const src = path.join(__dirname, "src");
const out = path.join(__dirname, "out");
const sources = {};
for (const f of fs.readdirSync(src).filter((f) => f.endsWith(".sol")).sort()) {
  sources[f] = { content: fs.readFileSync(path.join(src, f), "utf8") };
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    evmVersion: "shanghai",
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
function findImports(p) {
  const file = path.join(__dirname, "node_modules", p);
  return fs.existsSync(file) ? { contents: fs.readFileSync(file, "utf8") } : { error: `not found: ${p}` };
}
const result = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (result.errors || []).filter((e) => e.severity === "error");
for (const e of result.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);
const check = process.argv.includes("--check");
fs.mkdirSync(out, { recursive: true });
let stale = false;
for (const f of Object.keys(sources)) {
  for (const [name, c] of Object.entries(result.contracts[f])) {
    if (!c.evm.bytecode.object) continue; // an interface
    const text = JSON.stringify({ compiler: `solc ${solc.version()}`, abi: c.abi, bytecode: "0x" + c.evm.bytecode.object }, null, 1) + "\n";
    const file = path.join(out, `${name}.json`);
    if (check) {
      if (!fs.existsSync(file) || fs.readFileSync(file, "utf8") !== text) {
        console.error(`${file} is stale: run node rewards/contracts/build.js`);
        stale = true;
      }
    } else {
      fs.writeFileSync(file, text);
      console.log(`${file}: ${c.evm.bytecode.object.length / 2} bytes`);
    }
  }
}
process.exit(stale ? 1 : 0);
