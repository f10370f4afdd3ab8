use super::*;
use crate::run::Engine;

fn both(f: impl Fn(Engine)) {
    f(Engine::Interp);
    f(Engine::Jit);
}

fn store(e: Engine) -> Store {
    Store::new(e, module::WASM1).unwrap()
}

#[test]
fn invokes_an_export_with_arguments() {
    both(|e| {
        let mut s = store(e);
        let wasm = wat::parse_str(
            r#"(module (func (export "add") (param i32 i64) (result i64)
            local.get 1 local.get 0 i64.extend_i32_s i64.add))"#,
        )
        .unwrap();
        let id = s.instantiate(&wasm).unwrap();
        let r = s.invoke(id, "add", &[Value::I32(-3i32 as u32), Value::I64(10)]).unwrap();
        assert_eq!(r, vec![Value::I64(7)], "{e:?}");
        let err = s.invoke(id, "add", &[Value::I32(1)]).unwrap_err();
        assert!(matches!(err, StoreError::BadArguments { .. }), "{err}");
        assert!(matches!(s.invoke(id, "nope", &[]), Err(StoreError::NoExport(_))));
    });
}

#[test]
fn more_than_twelve_arguments_go_on_the_stack() {
    both(|e| {
        let mut s = store(e);
        let params = "i64 ".repeat(15);
        let body: String = (0..15).map(|i| format!("local.get {i} i64.const {} i64.mul i64.add ", i + 1)).collect();
        let src = format!(r#"(module (func (export "f") (param {params}) (result i64) i64.const 0 {body}))"#);
        let id = s.instantiate(&wat::parse_str(&src).unwrap()).unwrap();
        let args: Vec<Value> = (0..15).map(|i| Value::I64(i + 1)).collect();
        let want: u64 = (1..=15).map(|i| i * i).sum();
        assert_eq!(s.invoke(id, "f", &args).unwrap(), vec![Value::I64(want)], "{e:?}");
    });
}

#[test]
fn instances_share_memories_tables_and_globals() {
    both(|e| {
        let mut s = store(e);
        let a = wat::parse_str(
            r#"(module
            (memory (export "mem") 1 4)
            (global (export "g") (mut i32) (i32.const 7))
            (table (export "tab") 2 funcref)
            (func $get (result i32) i32.const 0 i32.load)
            (elem (i32.const 0) $get)
            (func (export "get") (result i32) call $get)
            (func (export "grow") (result i32) i32.const 1 memory.grow))"#,
        )
        .unwrap();
        let ida = s.instantiate(&a).unwrap();
        s.register("A", ida);
        let b = wat::parse_str(
            r#"(module
            (import "A" "mem" (memory 1))
            (import "A" "g" (global (mut i32)))
            (import "A" "tab" (table 2 funcref))
            (import "A" "get" (func $get (result i32)))
            (type $t (func (result i32)))
            (func $mine (result i32) i32.const 99)
            (elem (i32.const 1) $mine)
            (data (i32.const 0) "\2a")
            (func (export "set") (param i32) local.get 0 global.set 0)
            (func (export "via") (param i32) (result i32) local.get 0 call_indirect (type $t))
            (func (export "size") (result i32) memory.size)
            (func (export "far") (result i32) i32.const 65536 i32.load))"#,
        )
        .unwrap();
        let idb = s.instantiate(&b).unwrap();
        assert_eq!(s.invoke(ida, "get", &[]).unwrap(), vec![Value::I32(42)]);
        s.invoke(idb, "set", &[Value::I32(5)]).unwrap();
        assert_eq!(s.global(ida, "g").unwrap(), Value::I32(5));
        assert_eq!(s.invoke(idb, "via", &[Value::I32(0)]).unwrap(), vec![Value::I32(42)]);
        assert_eq!(s.invoke(idb, "via", &[Value::I32(1)]).unwrap(), vec![Value::I32(99)]);
        let oob = s.invoke(idb, "via", &[Value::I32(2)]).unwrap_err();
        assert_eq!(oob.trap_message(), Some("undefined element"));
        assert_eq!(s.invoke(idb, "far", &[]).unwrap_err().trap_message(), Some("out of bounds memory access"));
        assert_eq!(s.invoke(ida, "grow", &[]).unwrap(), vec![Value::I32(1)]);
        assert_eq!(s.invoke(idb, "size", &[]).unwrap(), vec![Value::I32(2)]);
        assert_eq!(s.invoke(idb, "far", &[]).unwrap(), vec![Value::I32(0)], "{e:?}: the grown page is reachable");
    });
}

#[test]
fn linking_errors_and_start_traps() {
    both(|e| {
        let mut s = store(e);
        let missing = wat::parse_str(r#"(module (import "spectest" "nope" (func)))"#).unwrap();
        assert!(matches!(s.instantiate(&missing), Err(StoreError::Link(LinkError::MissingImport { .. }))));
        let wrong = wat::parse_str(r#"(module (import "spectest" "print_i32" (func (param i64))))"#).unwrap();
        assert!(matches!(s.instantiate(&wrong), Err(StoreError::Link(LinkError::Incompatible { .. }))));
        let tab = wat::parse_str(
            r#"(module (import "spectest" "table" (table 10 funcref)) (func $f) (elem (i32.const 10) $f))"#,
        )
        .unwrap();
        assert!(matches!(s.instantiate(&tab), Err(StoreError::Link(LinkError::SegmentDoesNotFit { .. }))));
        let start = wat::parse_str(r#"(module (func $s unreachable) (start $s))"#).unwrap();
        assert_eq!(s.instantiate(&start).unwrap_err().trap_message(), Some("unreachable"));
        let deep = wat::parse_str(r#"(module (func $r (export "r") call $r))"#).unwrap();
        let id = s.instantiate(&deep).unwrap();
        assert_eq!(s.invoke(id, "r", &[]).unwrap_err().trap_message(), Some("call stack exhausted"));
        let print = wat::parse_str(
            r#"(module (import "spectest" "print_i32" (func $p (param i32)))
            (func (export "go") i32.const 17 call $p))"#,
        )
        .unwrap();
        let id = s.instantiate(&print).unwrap();
        s.invoke(id, "go", &[]).unwrap();
        assert_eq!(s.io.output, b"print_i32(17 : i32)\n");
    });
}
