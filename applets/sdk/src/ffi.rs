//! The raw host imports of the W3bstream v1 ABI (DESIGN §4). Every call returns
//! an i32 status; outputs come back through two out-pointers that the host fills
//! after copying the bytes into memory it got from this module's `alloc`.
//! Module and function names are the ones `wattstream_abi::imports` lists
//! (attributes need literals, so they are written out here).

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    pub fn ws_log(level: i32, ptr: *const u8, len: i32) -> i32;
    pub fn ws_get_data(rid: i32, out_ptr: *mut u32, out_len: *mut u32) -> i32;
    pub fn ws_set_data(rid: i32, ptr: *const u8, len: i32) -> i32;
    pub fn ws_get_db(kptr: *const u8, klen: i32, out_ptr: *mut u32, out_len: *mut u32) -> i32;
    pub fn ws_set_db(kptr: *const u8, klen: i32, vptr: *const u8, vlen: i32) -> i32;
    pub fn ws_get_env(kptr: *const u8, klen: i32, out_ptr: *mut u32, out_len: *mut u32) -> i32;
    pub fn ws_set_sql_db(ptr: *const u8, len: i32) -> i32;
    pub fn ws_get_sql_db(ptr: *const u8, len: i32, out_ptr: *mut u32, out_len: *mut u32) -> i32;
    pub fn ws_send_tx(chain_id: i32, ptr: *const u8, len: i32, out_ptr: *mut u32, out_len: *mut u32) -> i32;
    pub fn ws_call_contract(
        chain_id: i32,
        ptr: *const u8,
        len: i32,
        out_ptr: *mut u32,
        out_len: *mut u32,
    ) -> i32;
    pub fn ws_get_event_type(rid: i32, out_ptr: *mut u32, out_len: *mut u32) -> i32;
    pub fn ws_api_call(ptr: *const u8, len: i32, out_ptr: *mut u32, out_len: *mut u32) -> i32;
}

#[link(wasm_import_module = "stat")]
unsafe extern "C" {
    pub fn ws_submit_metrics(ptr: *const u8, len: i32) -> i32;
}
