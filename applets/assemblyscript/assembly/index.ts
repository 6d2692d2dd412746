// A W3bstream applet written against @w3bstream/wasm-sdk, as one would for
// W3bstream itself: it logs each meter reading and stores it in the project's
// SQL database. WattStream runs it unmodified. As on W3bstream, a return
// value below zero is a failure (the call's writes are rolled back).
import { GetDataByRID, Log, ExecSQL, QuerySQL, JSON } from "@w3bstream/wasm-sdk";
import { String as SQLString, Float64, Int64 } from "@w3bstream/wasm-sdk/assembly/sql";
export { alloc } from "@w3bstream/wasm-sdk";

export function start(rid: i32): i32 {
  const message = GetDataByRID(rid);
  const envelope = <JSON.Obj>JSON.parse(message);
  const data = envelope.getObj("data");
  if (data == null) {
    Log("not a meter envelope");
    return -1;
  }
  const watts = data.getValue("sensor_reading");
  const ts = data.getInteger("timestamp");
  const key = envelope.getString("public_key");
  if (watts == null || ts == null || key == null) {
    Log("reading without sensor_reading or timestamp");
    return -2;
  }
  let w: f64 = 0;
  if (watts.isFloat) {
    w = (<JSON.Float>watts).valueOf();
  } else if (watts.isInteger) {
    w = <f64>(<JSON.Integer>watts).valueOf();
  }
  ExecSQL("CREATE TABLE IF NOT EXISTS readings (public_key TEXT, timestamp INTEGER, watts REAL)", []);
  ExecSQL("INSERT INTO readings (public_key, timestamp, watts) VALUES (?, ?, ?)", [
    new SQLString(key.valueOf()),
    new Int64(ts.valueOf()),
    new Float64(w),
  ]);
  const count = QuerySQL("SELECT COUNT(*) AS n FROM readings", []);
  Log("stored a reading of " + w.toString() + " W; table now: " + count);
  return 0;
}
