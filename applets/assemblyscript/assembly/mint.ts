// A W3bstream ERC-20 mint applet written against @w3bstream/wasm-sdk, as one
// would for W3bstream itself: each paid meter reading mints tokens to the
// device's owner on an EVM chain with `SendTx`. WattStream runs it
// unmodified: the transaction is stored with the event's effects and sent
// by the processor once they commit, once (see README, "Chains applets send
// to"). The processor's key for the chain needs the token's MINTER_ROLE.
//
// Environment (the project's): MINT_CHAIN_ID (a configured [chains.ID]) and
// MINT_TOKEN (the ERC-20's address). The processor sets WS_DEVICE_OWNER and
// WS_PAID_S for each verified reading.
import { GetEnv, Log, SendTx } from "@w3bstream/wasm-sdk";
export { alloc } from "@w3bstream/wasm-sdk";

// mint(address,uint256)
const MINT = "40c10f19";
// 0.001 token (18 decimals) for each paid second.
const UNITS_PER_SECOND: u64 = 1_000_000_000_000_000;

function word(hex: string): string {
  return hex.padStart(64, "0");
}

export function start(rid: i32): i32 {
  const owner = GetEnv("WS_DEVICE_OWNER");
  if (owner.length != 42 || !owner.startsWith("0x")) {
    Log("the device's owner is not an EVM address: nothing minted");
    return -1;
  }
  const paid = U64.parseInt(GetEnv("WS_PAID_S"), 10);
  if (paid == 0) {
    Log("nothing is paid for this reading");
    return 0;
  }
  const chain = I32.parseInt(GetEnv("MINT_CHAIN_ID"), 10);
  const token = GetEnv("MINT_TOKEN");
  const amount = paid * UNITS_PER_SECOND;
  const data = "0x" + MINT + word(owner.slice(2).toLowerCase()) + word(amount.toString(16));
  const id = SendTx(chain, token, "0", data);
  Log("minting " + amount.toString() + " units to " + owner + " on chain " + chain.toString() + ": " + id);
  return 0;
}
