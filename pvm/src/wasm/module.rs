//! Decoding and validation: a WebAssembly binary, checked by `wasmparser`
//! with the feature set asked for, becomes a [`Module`]: its types, imports,
//! definitions, segments and each function's operators with the operand
//! stack height after each, ready for lowering.

use wasmparser::{
    ConstExpr, DataKind, ElementItems, ElementKind, ExternalKind, FuncValidatorAllocations, Operator, Parser, Payload,
    TypeRef, ValidPayload, Validator, WasmFeatures,
};

/// A value type the front end handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValType {
    I32,
    I64,
    F32,
    F64,
}

impl ValType {
    /// The text format's name.
    pub fn name(self) -> &'static str {
        match self {
            ValType::I32 => "i32",
            ValType::I64 => "i64",
            ValType::F32 => "f32",
            ValType::F64 => "f64",
        }
    }
}

/// A function type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct FuncType {
    pub params: Vec<ValType>,
    pub results: Vec<ValType>,
}

/// Limits of a memory (in 64 KiB pages) or a table (in elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub min: u64,
    pub max: Option<u64>,
}

impl Limits {
    /// True if an import of limits `self` accepts an export of limits
    /// `actual` (the spec's import matching).
    pub fn accepts(&self, actual: &Limits) -> bool {
        actual.min >= self.min
            && match (self.max, actual.max) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(want), Some(got)) => got <= want,
            }
    }
}

/// A global's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalType {
    pub ty: ValType,
    pub mutable: bool,
}

/// What an import brings in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportKind {
    /// A function of this type index.
    Func(u32),
    Table(Limits),
    Memory(Limits),
    Global(GlobalType),
}

/// One import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    pub module: String,
    pub name: String,
    pub kind: ImportKind,
    /// Byte offset of the import in the binary, for messages.
    pub offset: usize,
}

/// A constant expression (offsets of segments, initial values of globals).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Const {
    /// A value of this type with these bits (i32 and f32 zero-extended).
    Value(ValType, u64),
    /// The value of global n (an import).
    Global(u32),
    /// A reference to function n, or null.
    Func(Option<u32>),
}

/// An export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    Func,
    Table,
    Memory,
    Global,
}

/// An active element segment: function indices (None: null) written into
/// a table at an offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub table: u32,
    pub offset: Const,
    pub funcs: Vec<Option<u32>>,
}

/// An active data segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Data<'a> {
    pub memory: u32,
    pub offset: Const,
    pub bytes: &'a [u8],
}

/// A function body, validated: its declared locals and its operators, each
/// with its byte offset and the operand stack height after it.
#[derive(Clone, Debug)]
pub struct Body<'a> {
    pub locals: Vec<ValType>,
    pub ops: Vec<Operator<'a>>,
    pub offsets: Vec<usize>,
    pub heights: Vec<u32>,
}

/// A decoded, validated module.
#[derive(Clone, Debug, Default)]
pub struct Module<'a> {
    pub types: Vec<FuncType>,
    pub imports: Vec<Import>,
    /// Type index of every function, imported ones first.
    pub funcs: Vec<u32>,
    pub imported_funcs: usize,
    /// Every table's limits, imported ones first.
    pub tables: Vec<Limits>,
    pub imported_tables: usize,
    pub memories: Vec<Limits>,
    pub imported_memories: usize,
    /// Every global's type, imported ones first; `global_inits` holds the
    /// defined ones' initial values.
    pub globals: Vec<GlobalType>,
    pub imported_globals: usize,
    pub global_inits: Vec<Const>,
    pub exports: Vec<(String, ExportKind, u32)>,
    pub start: Option<u32>,
    pub elements: Vec<Element>,
    pub data: Vec<Data<'a>>,
    pub bodies: Vec<Body<'a>>,
    /// Function names from the `name` custom section (a malformed one is
    /// ignored, as custom sections do not affect validity).
    pub func_names: Vec<(u32, String)>,
}

/// Why a module was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModuleError {
    #[error("malformed or invalid module at byte {offset:#x}: {message}")]
    Invalid { offset: usize, message: String },
    #[error("at byte {offset:#x}: {what} is not supported by the pvm's WebAssembly front end")]
    Unsupported { offset: usize, what: String },
}

impl From<wasmparser::BinaryReaderError> for ModuleError {
    fn from(e: wasmparser::BinaryReaderError) -> Self {
        ModuleError::Invalid { offset: e.offset() as usize, message: e.message().to_string() }
    }
}

/// The features of the WebAssembly 1.0 test suite.
pub const WASM1: WasmFeatures = WasmFeatures::WASM1;

/// What `pvm run` accepts: 1.0 plus what clang emits by default and the
/// small proposals that need nothing new from the engines (sign extension,
/// non-trapping float-to-int conversions, multiple values).
pub fn program_features() -> WasmFeatures {
    WasmFeatures::WASM1
        | WasmFeatures::SIGN_EXTENSION
        | WasmFeatures::SATURATING_FLOAT_TO_INT
        | WasmFeatures::MULTI_VALUE
        | WasmFeatures::MUTABLE_GLOBAL
}

fn unsupported(offset: usize, what: impl Into<String>) -> ModuleError {
    ModuleError::Unsupported { offset, what: what.into() }
}

fn val_type(t: wasmparser::ValType, offset: usize) -> Result<ValType, ModuleError> {
    Ok(match t {
        wasmparser::ValType::I32 => ValType::I32,
        wasmparser::ValType::I64 => ValType::I64,
        wasmparser::ValType::F32 => ValType::F32,
        wasmparser::ValType::F64 => ValType::F64,
        other => return Err(unsupported(offset, format!("the value type {other}"))),
    })
}

fn func_type(t: &wasmparser::FuncType, offset: usize) -> Result<FuncType, ModuleError> {
    let conv = |ts: &[wasmparser::ValType]| ts.iter().map(|&t| val_type(t, offset)).collect::<Result<Vec<_>, _>>();
    Ok(FuncType { params: conv(t.params())?, results: conv(t.results())? })
}

fn memory_limits(m: &wasmparser::MemoryType, offset: usize) -> Result<Limits, ModuleError> {
    if m.memory64 || m.shared || m.page_size_log2.is_some() {
        return Err(unsupported(offset, "a 64-bit, shared or custom-page-size memory"));
    }
    Ok(Limits { min: m.initial, max: m.maximum })
}

fn table_limits(t: &wasmparser::TableType, offset: usize) -> Result<Limits, ModuleError> {
    if t.table64 || t.shared || !t.element_type.is_func_ref() {
        return Err(unsupported(offset, "a table of other than funcref"));
    }
    Ok(Limits { min: t.initial, max: t.maximum })
}

fn global_type(g: &wasmparser::GlobalType, offset: usize) -> Result<GlobalType, ModuleError> {
    if g.shared {
        return Err(unsupported(offset, "a shared global"));
    }
    Ok(GlobalType { ty: val_type(g.content_type, offset)?, mutable: g.mutable })
}

/// Evaluates the shape of a (validated) constant expression.
fn const_expr(e: &ConstExpr<'_>) -> Result<Const, ModuleError> {
    let mut r = e.get_operators_reader();
    let offset = r.original_position() as usize;
    let value = match r.read()? {
        Operator::I32Const { value } => Const::Value(ValType::I32, u64::from(value as u32)),
        Operator::I64Const { value } => Const::Value(ValType::I64, value as u64),
        Operator::F32Const { value } => Const::Value(ValType::F32, u64::from(value.bits())),
        Operator::F64Const { value } => Const::Value(ValType::F64, value.bits()),
        Operator::GlobalGet { global_index } => Const::Global(global_index),
        Operator::RefFunc { function_index } => Const::Func(Some(function_index)),
        Operator::RefNull { .. } => Const::Func(None),
        other => return Err(unsupported(offset, format!("the constant expression {other:?}"))),
    };
    match r.read()? {
        Operator::End => Ok(value),
        _ => Err(unsupported(offset, "a constant expression of more than one instruction")),
    }
}

/// Decodes and validates `bytes` with `features`.
pub fn parse(bytes: &[u8], features: WasmFeatures) -> Result<Module<'_>, ModuleError> {
    let mut m = Module::default();
    let mut validator = Validator::new_with_features(features);
    let mut allocs = FuncValidatorAllocations::default();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload?;
        if let Payload::MemorySection(r) = &payload {
            let range = r.range();
            super::strict::memory_section(bytes, range.start as usize..range.end as usize, features)?;
        }
        if let ValidPayload::Func(func, body) = validator.payload(&payload)? {
            let mut v = func.into_validator(std::mem::take(&mut allocs));
            // About one operator per two bytes of body in clang's output:
            // reserved once, not grown a doubling at a time.
            let n = usize::try_from(body.range().end.saturating_sub(body.range().start) / 2).unwrap_or(0);
            let mut out = Body {
                locals: Vec::new(),
                ops: Vec::with_capacity(n),
                offsets: Vec::with_capacity(n),
                heights: Vec::with_capacity(n),
            };
            let mut locals = body.get_locals_reader()?;
            for _ in 0..locals.get_count() {
                let offset = locals.original_position() as usize;
                let (count, ty) = locals.read()?;
                v.define_locals(offset as u64, count, ty)?;
                let ty = val_type(ty, offset)?;
                out.locals.extend(std::iter::repeat_n(ty, count as usize));
            }
            let mut ops = body.get_operators_reader()?;
            while !ops.eof() {
                let (op, offset) = ops.read_with_offset()?;
                v.op(offset, &op)?;
                super::strict::operator(bytes, features, offset as usize, &op)?;
                out.heights.push(v.operand_stack_height());
                out.offsets.push(offset as usize);
                out.ops.push(op);
            }
            ops.finish()?;
            allocs = v.into_allocations();
            m.bodies.push(out);
        }
        section(&mut m, payload)?;
    }
    Ok(m)
}

/// Records what one section payload defines.
fn section<'a>(m: &mut Module<'a>, payload: Payload<'a>) -> Result<(), ModuleError> {
    match payload {
        Payload::TypeSection(r) => {
            let offset = r.range().start as usize;
            for t in r.into_iter_err_on_gc_types() {
                m.types.push(func_type(&t?, offset)?);
            }
        }
        Payload::ImportSection(r) => {
            for import in r.into_imports_with_offsets() {
                let (offset, import) = import?;
                let offset = offset as usize;
                let kind = match import.ty {
                    TypeRef::Func(t) | TypeRef::FuncExact(t) => {
                        m.funcs.push(t);
                        m.imported_funcs += 1;
                        ImportKind::Func(t)
                    }
                    TypeRef::Table(t) => {
                        let l = table_limits(&t, offset)?;
                        m.tables.push(l);
                        m.imported_tables += 1;
                        ImportKind::Table(l)
                    }
                    TypeRef::Memory(mt) => {
                        let l = memory_limits(&mt, offset)?;
                        m.memories.push(l);
                        m.imported_memories += 1;
                        ImportKind::Memory(l)
                    }
                    TypeRef::Global(g) => {
                        let g = global_type(&g, offset)?;
                        m.globals.push(g);
                        m.imported_globals += 1;
                        ImportKind::Global(g)
                    }
                    TypeRef::Tag(_) => return Err(unsupported(offset, "an exception tag import")),
                };
                m.imports.push(Import { module: import.module.into(), name: import.name.into(), kind, offset });
            }
        }
        Payload::FunctionSection(r) => {
            for t in r {
                m.funcs.push(t?);
            }
        }
        Payload::TableSection(r) => {
            let offset = r.range().start as usize;
            for t in r {
                let t = t?;
                if !matches!(t.init, wasmparser::TableInit::RefNull) {
                    return Err(unsupported(offset, "a table with an initial value"));
                }
                m.tables.push(table_limits(&t.ty, offset)?);
            }
        }
        Payload::MemorySection(r) => {
            let offset = r.range().start as usize;
            for mt in r {
                m.memories.push(memory_limits(&mt?, offset)?);
            }
        }
        Payload::GlobalSection(r) => {
            let offset = r.range().start as usize;
            for g in r {
                let g = g?;
                m.globals.push(global_type(&g.ty, offset)?);
                m.global_inits.push(const_expr(&g.init_expr)?);
            }
        }
        Payload::ExportSection(r) => {
            for e in r {
                let e = e?;
                let kind = match e.kind {
                    ExternalKind::Func | ExternalKind::FuncExact => ExportKind::Func,
                    ExternalKind::Table => ExportKind::Table,
                    ExternalKind::Memory => ExportKind::Memory,
                    ExternalKind::Global => ExportKind::Global,
                    ExternalKind::Tag => return Err(unsupported(0, "an exception tag export")),
                };
                m.exports.push((e.name.to_string(), kind, e.index));
            }
        }
        Payload::StartSection { func, .. } => m.start = Some(func),
        Payload::ElementSection(r) => {
            for e in r {
                let e = e?;
                let offset = e.range.start as usize;
                let ElementKind::Active { table_index, offset_expr } = e.kind else {
                    return Err(unsupported(offset, "a passive or declared element segment"));
                };
                let funcs = match e.items {
                    ElementItems::Functions(r) => r.into_iter().map(|f| f.map(Some)).collect::<Result<Vec<_>, _>>()?,
                    ElementItems::Expressions(_, r) => r
                        .into_iter()
                        .map(|e| match const_expr(&e?)? {
                            Const::Func(f) => Ok(f),
                            _ => Err(unsupported(offset, "an element expression other than ref.func or ref.null")),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                };
                m.elements.push(Element { table: table_index.unwrap_or(0), offset: const_expr(&offset_expr)?, funcs });
            }
        }
        Payload::DataSection(r) => {
            for d in r {
                let d = d?;
                let DataKind::Active { memory_index, offset_expr } = d.kind else {
                    return Err(unsupported(d.range.start as usize, "a passive data segment"));
                };
                m.data.push(Data { memory: memory_index, offset: const_expr(&offset_expr)?, bytes: d.data });
            }
        }
        Payload::CustomSection(r) => {
            if let wasmparser::KnownCustom::Name(names) = r.as_known() {
                m.func_names = function_names(names);
            }
        }
        _ => {}
    }
    Ok(())
}

fn function_names(names: wasmparser::NameSectionReader<'_>) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for name in names.into_iter().map_while(Result::ok) {
        if let wasmparser::Name::Function(map) = name {
            out.extend(map.into_iter().map_while(Result::ok).map(|n| (n.index, n.name.to_string())));
        }
    }
    out
}

impl Module<'_> {
    /// The name of function `f`: its `name` section entry, or `func[f]`.
    pub fn func_name(&self, f: u32) -> String {
        self.func_names.iter().find(|(i, _)| *i == f).map_or_else(|| format!("func[{f}]"), |(_, n)| n.clone())
    }

    /// The type of function `f`.
    pub fn func_type(&self, f: u32) -> &FuncType {
        static EMPTY: FuncType = FuncType { params: Vec::new(), results: Vec::new() };
        self.funcs.get(f as usize).and_then(|&t| self.types.get(t as usize)).unwrap_or(&EMPTY)
    }

    /// The export called `name`.
    pub fn export(&self, name: &str) -> Option<(ExportKind, u32)> {
        self.exports.iter().find(|(n, _, _)| n == name).map(|&(_, k, i)| (k, i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_small_module() {
        let wasm = wat::parse_str(
            r#"(module
                (import "env" "f" (func $f (param i32) (result i64)))
                (memory 1 2)
                (global $g (mut i32) (i32.const 7))
                (table 3 funcref)
                (elem (i32.const 1) $f $h)
                (data (i32.const 8) "hi")
                (func $h (export "h") (param i64) (local f32 f32) (i64.add (local.get 0) (i64.const 1)) drop)
                (start $h2)
                (func $h2))"#,
        )
        .unwrap();
        let m = parse(&wasm, program_features()).unwrap();
        assert_eq!(m.imported_funcs, 1);
        assert_eq!(m.funcs.len(), 3);
        assert_eq!(m.memories, vec![Limits { min: 1, max: Some(2) }]);
        assert_eq!(m.global_inits, vec![Const::Value(ValType::I32, 7)]);
        assert_eq!(m.elements[0].funcs, vec![Some(0), Some(1)]);
        assert_eq!(m.data[0].bytes, b"hi");
        assert_eq!(m.bodies[0].locals, vec![ValType::F32, ValType::F32]);
        assert_eq!(m.bodies[0].heights, vec![1, 2, 1, 0, 0]);
        assert_eq!(m.export("h"), Some((ExportKind::Func, 1)));
        assert_eq!(m.start, Some(2));
    }

    #[test]
    fn errors_name_the_offset_and_reason() {
        let Err(ModuleError::Invalid { offset, message }) = parse(b"\0asm\x01\0\0\0\x01", program_features()) else {
            panic!("a truncated module parsed")
        };
        assert_eq!(offset, 9);
        assert!(message.contains("unexpected end"), "{message}");
        let bad = wat::parse_str("(module (func (result i32) (i64.const 1)))").unwrap();
        assert!(
            matches!(parse(&bad, WASM1), Err(ModuleError::Invalid { message, .. }) if message.contains("type mismatch"))
        );
        let sign_ext =
            wat::parse_str("(module (func (param i32) (result i32) (i32.extend8_s (local.get 0))))").unwrap();
        assert!(parse(&sign_ext, WASM1).is_err());
        assert!(parse(&sign_ext, program_features()).is_ok());
        let simd = wat::parse_str("(module (func (param v128)))").unwrap();
        assert!(parse(&simd, WasmFeatures::all()).is_err());
    }
}
