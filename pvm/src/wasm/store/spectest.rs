//! The embedder's side of a store: the `spectest` module the test suite
//! imports from (printers, globals, a table, a memory), and the I/O its
//! printers write to.

use super::{Extern, FuncRef, GlobalRef, Instance, InstanceId, Store, StoreError, TableRef, ENTRY_SIZE};
use crate::isa::{Opcode, NUM_REGS};
use crate::machine::{sys, SysIo, Syscall};
use crate::trap::TrapKind;
use crate::wasm::code::Code;
use crate::wasm::host::{SPECTEST, SPECTEST_BASE};
use crate::wasm::module::{FuncType, GlobalType, Limits};
use crate::wasm::value::Value;

/// The spectest printers (`print_i32` and so on) and everything else a
/// store's programs may reach.
#[derive(Debug, Default)]
pub struct StoreIo {
    pub output: Vec<u8>,
}

impl SysIo for StoreIo {
    fn write(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }
    fn read(&mut self, _buf: &mut [u8]) -> usize {
        0
    }
    fn write_err(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }
    fn host_call(&mut self, n: u32, regs: &mut [u64; NUM_REGS], _mem: &mut [u8]) -> Result<Syscall, TrapKind> {
        let Some(&(name, params, _)) = n.checked_sub(SPECTEST_BASE).and_then(|k| SPECTEST.get(k as usize)) else {
            return Err(TrapKind::BadSyscall(sys::HOST.saturating_add_unsigned(n)));
        };
        let args: Vec<String> =
            params.iter().zip(regs.iter()).map(|(&t, &r)| Value::from_bits(t, r).to_string()).collect();
        self.output.extend_from_slice(format!("{name}({})\n", args.join(", ")).as_bytes());
        Ok(Syscall::Done)
    }
}

impl Store {
    /// The `spectest` instance: printers, globals of 666, a table of
    /// 10..20 and a memory of 1..2 pages.
    pub(super) fn spectest(&mut self) -> Result<InstanceId, StoreError> {
        let mut inst = Instance::default();
        let mut code = Code::new(self.m.code_end);
        for (k, &(name, params, results)) in SPECTEST.iter().enumerate() {
            let ty = FuncType { params: params.to_vec(), results: results.to_vec() };
            let addr = code.here();
            let n = SPECTEST_BASE + k as u32;
            code.emit(Opcode::Sys, 0, 0, 0, sys::HOST.saturating_add_unsigned(n));
            code.emit(Opcode::Ret, 0, 0, 0, 0);
            let type_id = self.ids.id(&ty);
            inst.exports.insert(name.into(), Extern::Func(FuncRef { addr, ty, type_id, desc: None, host: Some(n) }));
        }
        self.append_code(&code)?;
        let globals = [
            ("global_i32", Value::I32(666)),
            ("global_i64", Value::I64(666)),
            ("global_f32", Value::F32(666.6f32.to_bits())),
            ("global_f64", Value::F64(666.6f64.to_bits())),
        ];
        for (name, v) in globals {
            let addr = self.alloc_data(8)?;
            self.put(addr, &v.bits().to_le_bytes());
            inst.exports
                .insert(name.into(), Extern::Global(GlobalRef { addr, ty: GlobalType { ty: v.ty(), mutable: false } }));
        }
        let limits = Limits { min: 10, max: Some(20) };
        let addr = self.alloc_data(ENTRY_SIZE * limits.min)?;
        inst.exports.insert("table".into(), Extern::Table(TableRef { addr, limits }));
        let mem = self.alloc_memory(Limits { min: 1, max: Some(2) })?;
        inst.exports.insert("memory".into(), Extern::Memory(mem));
        self.instances.push(inst);
        Ok(self.instances.len() - 1)
    }
}
