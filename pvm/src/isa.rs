//! The instruction set, defined once.
//!
//! Every instruction is 8 bytes, little-endian:
//!
//! ```text
//! byte 0    opcode
//! byte 1    a    (destination register, or the value register of a store/branch)
//! byte 2    b    (first source / base register)
//! byte 3    c    (second source register)
//! bytes 4-7 imm  (signed 32-bit immediate, offset or absolute target)
//! ```
//!
//! The table in [`isa!`] gives each instruction its mnemonic, opcode byte,
//! operand format, class and flags; from it come the [`Opcode`] type, decoding,
//! the assembler's lookup, the disassembler's names and the round-trip test.

/// Size of one instruction in bytes.
pub const INSTR_SIZE: u64 = 8;
/// Number of general registers.
pub const NUM_REGS: usize = 16;
/// The stack pointer, by convention.
pub const SP: u8 = 15;

/// Operand formats: which fields an instruction uses and how it is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `op`
    None,
    /// `op rd, rs`
    R2,
    /// `op rd, rs1, rs2`
    R3,
    /// `op rd, rs, imm`
    RI,
    /// `op rd, imm`
    LoadImm,
    /// `op rd, [rs+imm]`
    Load,
    /// `op rv, [rs+imm]`: stores rv
    Store,
    /// `op rs1, rs2, target`
    Branch,
    /// `op target`
    Jump,
    /// `op rs`: reads one register
    Src,
    /// `op rd`: writes one register
    Dst,
    /// `op imm`
    Sys,
    /// `op rs, target`: a branch on one register against zero
    BranchZ,
    /// `op rd, [rs+imm], rl`: a load from a linear memory ending at rl
    LinearLoad,
    /// `op rv, [rs+imm], rl`: stores rv into a linear memory ending at rl
    LinearStore,
    /// `op rd, [rs+imm], rc`: an atomic read-modify-write (or futex
    /// operation) on the 8 bytes at rs+imm, with operand rc; rd is read
    /// (`cas`'s expected value) and written (the old value or a count)
    Atomic,
}

impl Class {
    /// The result is an f64 (engines may keep it in a float register).
    pub const fn float_result(self) -> bool {
        matches!(self, Class::Float | Class::IntToFloat)
    }

    /// The instruction reads or writes a linear memory.
    pub const fn linear_memory(self) -> bool {
        matches!(self, Class::LinearLoad | Class::LinearStore)
    }

    /// The source registers are read as f64 values.
    pub const fn reads_floats(self) -> bool {
        matches!(self, Class::Float | Class::FloatCompare)
    }

    /// The instruction moves sp without naming it (pushes, pops, calls
    /// and returns).
    pub const fn moves_sp(self) -> bool {
        matches!(self, Class::Stack | Class::Call | Class::Return)
    }

    /// The instruction reads or writes guest memory.
    pub const fn accesses_memory(self) -> bool {
        matches!(
            self,
            Class::Load
                | Class::Store
                | Class::LinearLoad
                | Class::LinearStore
                | Class::Stack
                | Class::Call
                | Class::Return
                | Class::Atomic
        )
    }

    /// The scheduler performs the instruction: both engines stop before it
    /// and hand it over (see `crate::threads`).
    pub const fn is_thread_op(self) -> bool {
        matches!(self, Class::Thread)
    }
}

impl LoadOp {
    /// Bytes the load reads.
    pub const fn bytes(self) -> u64 {
        match self {
            LoadOp::Ld8U | LoadOp::Ld8S => 1,
            LoadOp::Ld16U | LoadOp::Ld16S => 2,
            LoadOp::Ld32U | LoadOp::Ld32S => 4,
            LoadOp::Ld64 => 8,
        }
    }
}

impl StoreOp {
    /// Bytes the store writes.
    pub const fn bytes(self) -> u64 {
        match self {
            StoreOp::St8 => 1,
            StoreOp::St16 => 2,
            StoreOp::St32 => 4,
            StoreOp::St64 => 8,
        }
    }
}

/// Static facts about an opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpInfo {
    pub mnemonic: &'static str,
    pub format: Format,
    pub class: Class,
    /// Control may not fall through to the next instruction unconditionally:
    /// a basic block ends here.
    pub ends_block: bool,
    /// The instruction may trap at run time.
    pub can_trap: bool,
}

impl OpInfo {
    /// The translator's block (a superblock: conditional branches are side
    /// exits in it) ends after this instruction.
    pub const fn ends_superblock(self) -> bool {
        self.ends_block && !matches!(self.class, Class::Branch)
    }
}

const PLAIN: (bool, bool) = (false, false);
const TRAPS: (bool, bool) = (false, true);
const ENDS: (bool, bool) = (true, false);
const ENDS_TRAPS: (bool, bool) = (true, true);

macro_rules! isa {
    ($( $(#[$doc:meta])* $class:ident ($sub:ident) {
        $( $variant:ident = $code:literal, $mnemonic:literal, $format:ident, $flags:ident; )*
    } )*) => {
        /// An opcode. Matches over it are exhaustive, so a new opcode cannot
        /// be forgotten by either engine.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Opcode {
            $( $( $variant = $code, )* )*
        }

        /// What kind of work an instruction does: the classes both engines
        /// and the translator's analyses ask about, so that none keeps its
        /// own list. Each is a section of the ISA table.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Class {
            $( $(#[$doc])* $class, )*
        }

        $(
            $(#[$doc])*
            #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
            pub enum $sub {
                $( $variant, )*
            }
        )*

        /// An opcode as its class and its place in that class: a match over
        /// a class's own enum is exhaustive over exactly that class.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Kind {
            $( $class($sub), )*
        }

        impl Opcode {
            /// Every opcode, in table order.
            pub const ALL: &'static [Opcode] = &[$( $( Opcode::$variant, )* )*];

            /// Decodes an opcode byte.
            pub const fn from_byte(byte: u8) -> Option<Opcode> {
                match byte {
                    $( $( $code => Some(Opcode::$variant), )* )*
                    _ => None,
                }
            }

            /// The opcode's class, with its place in it.
            pub const fn kind(self) -> Kind {
                match self {
                    $( $( Opcode::$variant => Kind::$class($sub::$variant), )* )*
                }
            }

            /// The table rows by opcode byte: `info` is one indexed load
            /// (a match of this size is not inlined, and decoding, the
            /// verifier and the translator's register map ask for every
            /// instruction of a whole libc at start-up).
            const INFO: [Option<OpInfo>; 256] = {
                let mut rows = [None; 256];
                $( $( rows[$code] = Some(OpInfo {
                    mnemonic: $mnemonic,
                    format: Format::$format,
                    class: Class::$class,
                    ends_block: $flags.0,
                    can_trap: $flags.1,
                }); )* )*
                rows
            };

            /// The table row of this opcode.
            #[inline]
            pub const fn info(self) -> OpInfo {
                match Self::INFO[self as u8 as usize] {
                    Some(row) => row,
                    None => unreachable!(),
                }
            }

            /// Looks a mnemonic up (the assembler's table).
            pub fn from_mnemonic(m: &str) -> Option<Opcode> {
                match m {
                    $( $( $mnemonic => Some(Opcode::$variant), )* )*
                    _ => None,
                }
            }
        }
    };
}

isa! {
    /// Moves and constants: `nop`, `mov`, `li`, `lih`.
    Move (MoveOp) {
        Nop = 0x00, "nop", None, PLAIN;
        Mov = 0x01, "mov", R2, PLAIN;
        Li = 0x02, "li", LoadImm, PLAIN;
        Lih = 0x03, "lih", LoadImm, PLAIN;
    }
    /// Integer arithmetic, logic, shifts, rotates, comparisons, bit
    /// counts and extensions, on 64 bits, or on the low 32 bits with the
    /// result zero-extended (the `32` forms).
    Int (IntOp) {
        Add = 0x10, "add", R3, PLAIN;
        Sub = 0x11, "sub", R3, PLAIN;
        Mul = 0x12, "mul", R3, PLAIN;
        And = 0x17, "and", R3, PLAIN;
        Or = 0x18, "or", R3, PLAIN;
        Xor = 0x19, "xor", R3, PLAIN;
        Shl = 0x1a, "shl", R3, PLAIN;
        Shr = 0x1b, "shr", R3, PLAIN;
        Sar = 0x1c, "sar", R3, PLAIN;
        Seq = 0x1d, "seq", R3, PLAIN;
        Sne = 0x1e, "sne", R3, PLAIN;
        Slt = 0x1f, "slt", R3, PLAIN;
        Sltu = 0x20, "sltu", R3, PLAIN;
        Sle = 0x21, "sle", R3, PLAIN;
        Sleu = 0x22, "sleu", R3, PLAIN;
        Rotl = 0x23, "rotl", R3, PLAIN;
        Rotr = 0x24, "rotr", R3, PLAIN;
        Clz = 0x25, "clz", R2, PLAIN;
        Ctz = 0x26, "ctz", R2, PLAIN;
        Popcnt = 0x27, "popcnt", R2, PLAIN;
        Sext8 = 0x08, "sext8", R2, PLAIN;
        Sext16 = 0x09, "sext16", R2, PLAIN;
        Sext32 = 0x0a, "sext32", R2, PLAIN;
        Zext32 = 0x0b, "zext32", R2, PLAIN;
        Sext8To32 = 0x0c, "sext8_32", R2, PLAIN;
        Sext16To32 = 0x0d, "sext16_32", R2, PLAIN;
        AddI = 0x30, "addi", RI, PLAIN;
        SubI = 0x31, "subi", RI, PLAIN;
        MulI = 0x32, "muli", RI, PLAIN;
        AndI = 0x37, "andi", RI, PLAIN;
        OrI = 0x38, "ori", RI, PLAIN;
        XorI = 0x39, "xori", RI, PLAIN;
        ShlI = 0x3a, "shli", RI, PLAIN;
        ShrI = 0x3b, "shri", RI, PLAIN;
        SarI = 0x3c, "sari", RI, PLAIN;
        SeqI = 0x3d, "seqi", RI, PLAIN;
        SneI = 0x3e, "snei", RI, PLAIN;
        SltI = 0x3f, "slti", RI, PLAIN;
        SltuI = 0x40, "sltui", RI, PLAIN;
        SleI = 0x41, "slei", RI, PLAIN;
        SleuI = 0x42, "sleui", RI, PLAIN;
        RotlI = 0x43, "rotli", RI, PLAIN;
        Add32 = 0x80, "add32", R3, PLAIN;
        Sub32 = 0x81, "sub32", R3, PLAIN;
        Mul32 = 0x82, "mul32", R3, PLAIN;
        And32 = 0x87, "and32", R3, PLAIN;
        Or32 = 0x88, "or32", R3, PLAIN;
        Xor32 = 0x89, "xor32", R3, PLAIN;
        Shl32 = 0x8a, "shl32", R3, PLAIN;
        Shr32 = 0x8b, "shr32", R3, PLAIN;
        Sar32 = 0x8c, "sar32", R3, PLAIN;
        Rotl32 = 0x8d, "rotl32", R3, PLAIN;
        Rotr32 = 0x8e, "rotr32", R3, PLAIN;
        Seq32 = 0x8f, "seq32", R3, PLAIN;
        Sne32 = 0x90, "sne32", R3, PLAIN;
        Slt32 = 0x91, "slt32", R3, PLAIN;
        Sltu32 = 0x92, "sltu32", R3, PLAIN;
        Sle32 = 0x93, "sle32", R3, PLAIN;
        Sleu32 = 0x94, "sleu32", R3, PLAIN;
        Clz32 = 0x95, "clz32", R2, PLAIN;
        Ctz32 = 0x96, "ctz32", R2, PLAIN;
        Popcnt32 = 0x97, "popcnt32", R2, PLAIN;
        AddI32 = 0xa0, "addi32", RI, PLAIN;
        SubI32 = 0xa1, "subi32", RI, PLAIN;
        MulI32 = 0xa2, "muli32", RI, PLAIN;
        AndI32 = 0xa3, "andi32", RI, PLAIN;
        OrI32 = 0xa4, "ori32", RI, PLAIN;
        XorI32 = 0xa5, "xori32", RI, PLAIN;
        ShlI32 = 0xa6, "shli32", RI, PLAIN;
        ShrI32 = 0xa7, "shri32", RI, PLAIN;
        SarI32 = 0xa8, "sari32", RI, PLAIN;
        RotlI32 = 0xa9, "rotli32", RI, PLAIN;
        SeqI32 = 0xaa, "seqi32", RI, PLAIN;
        SneI32 = 0xab, "snei32", RI, PLAIN;
        SltI32 = 0xac, "slti32", RI, PLAIN;
        SltuI32 = 0xad, "sltui32", RI, PLAIN;
        SleI32 = 0xae, "slei32", RI, PLAIN;
        SleuI32 = 0xaf, "sleui32", RI, PLAIN;
    }
    /// Integer division and remainder (trap on a zero divisor; the `32`
    /// forms and `divst` also on a signed overflow).
    Div (DivOp) {
        DivS = 0x13, "divs", R3, TRAPS;
        DivU = 0x14, "divu", R3, TRAPS;
        RemS = 0x15, "rems", R3, TRAPS;
        RemU = 0x16, "remu", R3, TRAPS;
        DivSI = 0x33, "divsi", RI, TRAPS;
        DivUI = 0x34, "divui", RI, TRAPS;
        RemSI = 0x35, "remsi", RI, TRAPS;
        RemUI = 0x36, "remui", RI, TRAPS;
        DivST = 0x28, "divst", R3, TRAPS;
        DivS32 = 0x83, "divs32", R3, TRAPS;
        DivU32 = 0x84, "divu32", R3, TRAPS;
        RemS32 = 0x85, "rems32", R3, TRAPS;
        RemU32 = 0x86, "remu32", R3, TRAPS;
    }
    /// An f64 result from f64 operands (`fadd` .. `fnearest`).
    Float (FloatOp) {
        FAdd = 0x50, "fadd", R3, PLAIN;
        FSub = 0x51, "fsub", R3, PLAIN;
        FMul = 0x52, "fmul", R3, PLAIN;
        FDiv = 0x53, "fdiv", R3, PLAIN;
        FSqrt = 0x57, "fsqrt", R2, PLAIN;
        FMin = 0x5d, "fmin", R3, PLAIN;
        FMax = 0x5e, "fmax", R3, PLAIN;
        FFloor = 0xb0, "ffloor", R2, PLAIN;
        FCeil = 0xb1, "fceil", R2, PLAIN;
        FTrunc = 0xb2, "ftrunc", R2, PLAIN;
        FNearest = 0xb3, "fnearest", R2, PLAIN;
    }
    /// A 0/1 integer result from comparing f64 operands.
    FloatCompare (FloatCompareOp) {
        FEq = 0x54, "feq", R3, PLAIN;
        FLt = 0x55, "flt", R3, PLAIN;
        FLe = 0x56, "fle", R3, PLAIN;
        FNe = 0x5f, "fne", R3, PLAIN;
    }
    /// Bit manipulation of an f64 in an integer register.
    FloatBits (FloatBitsOp) {
        FNeg = 0x58, "fneg", R2, PLAIN;
        FAbs = 0x5b, "fabs", R2, PLAIN;
        FCopysign = 0x5c, "fcopysign", R3, PLAIN;
    }
    /// An f64 result from an integer operand (`itof`).
    IntToFloat (IntToFloatOp) {
        IToF = 0x59, "itof", R2, PLAIN;
    }
    /// An integer result from an f64 operand (`ftoi`).
    FloatToInt (FloatToIntOp) {
        FToI = 0x5a, "ftoi", R2, PLAIN;
    }
    /// f32 arithmetic and comparisons on the bits of an f32 in the low 32
    /// bits of a register (the upper bits zero in results).
    Float32 (Float32Op) {
        FAdd32 = 0xc0, "fadd32", R3, PLAIN;
        FSub32 = 0xc1, "fsub32", R3, PLAIN;
        FMul32 = 0xc2, "fmul32", R3, PLAIN;
        FDiv32 = 0xc3, "fdiv32", R3, PLAIN;
        FSqrt32 = 0xc4, "fsqrt32", R2, PLAIN;
        FMin32 = 0xc5, "fmin32", R3, PLAIN;
        FMax32 = 0xc6, "fmax32", R3, PLAIN;
        FAbs32 = 0xc7, "fabs32", R2, PLAIN;
        FNeg32 = 0xc8, "fneg32", R2, PLAIN;
        FCopysign32 = 0xc9, "fcopysign32", R3, PLAIN;
        FFloor32 = 0xca, "ffloor32", R2, PLAIN;
        FCeil32 = 0xcb, "fceil32", R2, PLAIN;
        FTrunc32 = 0xcc, "ftrunc32", R2, PLAIN;
        FNearest32 = 0xcd, "fnearest32", R2, PLAIN;
        FEq32 = 0xce, "feq32", R3, PLAIN;
        FNe32 = 0xcf, "fne32", R3, PLAIN;
        FLt32 = 0xd0, "flt32", R3, PLAIN;
        FLe32 = 0xd1, "fle32", R3, PLAIN;
    }
    /// Conversions between integers, f32 and f64 (WebAssembly's, by its
    /// names); the `trunc` ones trap on NaN and out-of-range values, the
    /// `trunc_sat` ones saturate.
    Convert (ConvertOp) {
        I32TruncF32S = 0xe0, "i32_trunc_f32_s", R2, TRAPS;
        I32TruncF32U = 0xe1, "i32_trunc_f32_u", R2, TRAPS;
        I32TruncF64S = 0xe2, "i32_trunc_f64_s", R2, TRAPS;
        I32TruncF64U = 0xe3, "i32_trunc_f64_u", R2, TRAPS;
        I64TruncF32S = 0xe4, "i64_trunc_f32_s", R2, TRAPS;
        I64TruncF32U = 0xe5, "i64_trunc_f32_u", R2, TRAPS;
        I64TruncF64S = 0xe6, "i64_trunc_f64_s", R2, TRAPS;
        I64TruncF64U = 0xe7, "i64_trunc_f64_u", R2, TRAPS;
        I32TruncSatF32S = 0xe8, "i32_trunc_sat_f32_s", R2, PLAIN;
        I32TruncSatF32U = 0xe9, "i32_trunc_sat_f32_u", R2, PLAIN;
        I32TruncSatF64S = 0xea, "i32_trunc_sat_f64_s", R2, PLAIN;
        I32TruncSatF64U = 0xeb, "i32_trunc_sat_f64_u", R2, PLAIN;
        I64TruncSatF32S = 0xec, "i64_trunc_sat_f32_s", R2, PLAIN;
        I64TruncSatF32U = 0xed, "i64_trunc_sat_f32_u", R2, PLAIN;
        I64TruncSatF64U = 0xee, "i64_trunc_sat_f64_u", R2, PLAIN;
        F32ConvertI32S = 0xef, "f32_convert_i32_s", R2, PLAIN;
        F32ConvertI32U = 0xf0, "f32_convert_i32_u", R2, PLAIN;
        F32ConvertI64S = 0xf1, "f32_convert_i64_s", R2, PLAIN;
        F32ConvertI64U = 0xf2, "f32_convert_i64_u", R2, PLAIN;
        F64ConvertI32S = 0xf3, "f64_convert_i32_s", R2, PLAIN;
        F64ConvertI32U = 0xf4, "f64_convert_i32_u", R2, PLAIN;
        F64ConvertI64U = 0xf5, "f64_convert_i64_u", R2, PLAIN;
        F32DemoteF64 = 0xf6, "f32_demote_f64", R2, PLAIN;
        F64PromoteF32 = 0xf7, "f64_promote_f32", R2, PLAIN;
    }
    /// Loads from memory.
    Load (LoadOp) {
        Ld8U = 0x60, "ld8u", Load, TRAPS;
        Ld8S = 0x61, "ld8s", Load, TRAPS;
        Ld16U = 0x62, "ld16u", Load, TRAPS;
        Ld16S = 0x63, "ld16s", Load, TRAPS;
        Ld32U = 0x64, "ld32u", Load, TRAPS;
        Ld32S = 0x65, "ld32s", Load, TRAPS;
        Ld64 = 0x66, "ld64", Load, TRAPS;
    }
    /// Stores to memory.
    Store (StoreOp) {
        St8 = 0x68, "st8", Store, TRAPS;
        St16 = 0x69, "st16", Store, TRAPS;
        St32 = 0x6a, "st32", Store, TRAPS;
        St64 = 0x6b, "st64", Store, TRAPS;
    }
    /// Loads from a linear memory (WebAssembly's): the address is the low
    /// 32 bits of the base register plus the immediate, checked against
    /// the end of the linear memory held in a third register.
    LinearLoad (LinearLoadOp) {
        Lw8U = 0xd3, "lw8u", LinearLoad, TRAPS;
        Lw8S = 0xd4, "lw8s", LinearLoad, TRAPS;
        Lw16U = 0xd5, "lw16u", LinearLoad, TRAPS;
        Lw16S = 0xd6, "lw16s", LinearLoad, TRAPS;
        Lw32U = 0xd7, "lw32u", LinearLoad, TRAPS;
        Lw32S = 0xd8, "lw32s", LinearLoad, TRAPS;
        Lw64 = 0xd9, "lw64", LinearLoad, TRAPS;
        Lw8S32 = 0xda, "lw8s32", LinearLoad, TRAPS;
        Lw16S32 = 0xdb, "lw16s32", LinearLoad, TRAPS;
    }
    /// Stores to a linear memory, checked the same way.
    LinearStore (LinearStoreOp) {
        Sw8 = 0xdc, "sw8", LinearStore, TRAPS;
        Sw16 = 0xdd, "sw16", LinearStore, TRAPS;
        Sw32 = 0xde, "sw32", LinearStore, TRAPS;
        Sw64 = 0xdf, "sw64", LinearStore, TRAPS;
    }
    /// `push` and `pop`: memory at sp, and sp moves.
    Stack (StackOp) {
        Push = 0x6c, "push", Src, TRAPS;
        Pop = 0x6d, "pop", Dst, TRAPS;
    }
    /// Conditional branches (compare two registers, the `32` forms their
    /// low 32 bits, or one register with zero).
    Branch (BranchOp) {
        Beq = 0x71, "beq", Branch, ENDS;
        Bne = 0x72, "bne", Branch, ENDS;
        Blt = 0x73, "blt", Branch, ENDS;
        Bge = 0x74, "bge", Branch, ENDS;
        Bltu = 0x75, "bltu", Branch, ENDS;
        Bgeu = 0x76, "bgeu", Branch, ENDS;
        Blt32 = 0x7b, "blt32", Branch, ENDS;
        Bge32 = 0x7c, "bge32", Branch, ENDS;
        Beqz = 0x7d, "beqz", BranchZ, ENDS;
        Bnez = 0x7e, "bnez", BranchZ, ENDS;
    }
    /// `jmp` and `jr`.
    Jump (JumpOp) {
        Jmp = 0x70, "jmp", Jump, ENDS;
        Jr = 0x77, "jr", Src, ENDS_TRAPS;
    }
    /// `call` and `callr`: push the return address and jump.
    Call (CallOp) {
        Call = 0x78, "call", Jump, ENDS_TRAPS;
        CallR = 0x79, "callr", Src, ENDS_TRAPS;
    }
    /// `ret`.
    Return (ReturnOp) {
        Ret = 0x7a, "ret", None, ENDS_TRAPS;
    }
    /// `sys`, and `trap`, which raises a trap the program names.
    System (SystemOp) {
        Sys = 0x7f, "sys", Sys, ENDS_TRAPS;
        Trap = 0x6e, "trap", Sys, ENDS_TRAPS;
    }
    /// Threads: `spawn`, `join`, `yield`, `texit`, `tid`, and the futex
    /// pair `wait`/`wake`. The scheduler performs them (both engines stop
    /// before one and hand it over), so each ends a block.
    Thread (ThreadOp) {
        Spawn = 0x44, "spawn", R3, ENDS_TRAPS;
        Join = 0x45, "join", R2, ENDS_TRAPS;
        Yield = 0x46, "yield", None, ENDS_TRAPS;
        TExit = 0x47, "texit", Src, ENDS_TRAPS;
        Tid = 0x48, "tid", Dst, ENDS_TRAPS;
        Wait = 0x49, "wait", Atomic, ENDS_TRAPS;
        Wake = 0x4a, "wake", Atomic, ENDS_TRAPS;
    }
    /// Atomic read-modify-writes on an 8-byte aligned doubleword
    /// (sequentially consistent; stores for self-modifying code).
    Atomic (AtomicOp) {
        Cas = 0x4b, "cas", Atomic, TRAPS;
        XAdd = 0x4c, "xadd", Atomic, TRAPS;
        XChg = 0x4d, "xchg", Atomic, TRAPS;
    }
    /// `fence`: a full memory fence.
    Fence (FenceOp) {
        Fence = 0x4e, "fence", None, PLAIN;
    }
}

/// One decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instr {
    pub op: Opcode,
    pub a: u8,
    pub b: u8,
    pub c: u8,
    pub imm: i32,
}

/// Why 8 bytes are not a valid instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown opcode {0:#04x}")]
    UnknownOpcode(u8),
    #[error("register number {0} out of range (r0-r15)")]
    BadRegister(u8),
}

impl Instr {
    /// An instruction with all fields given.
    pub const fn new(op: Opcode, a: u8, b: u8, c: u8, imm: i32) -> Self {
        Instr { op, a, b, c, imm }
    }

    /// The 8-byte encoding.
    pub fn encode(&self) -> [u8; 8] {
        let i = self.imm.to_le_bytes();
        [self.op as u8, self.a, self.b, self.c, i[0], i[1], i[2], i[3]]
    }

    /// Decodes 8 bytes. Register fields must be below 16 even when the
    /// format does not use them, so every encoding has one meaning.
    pub fn decode(bytes: [u8; 8]) -> Result<Instr, DecodeError> {
        let op = Opcode::from_byte(bytes[0]).ok_or(DecodeError::UnknownOpcode(bytes[0]))?;
        for &r in &bytes[1..4] {
            if usize::from(r) >= NUM_REGS {
                return Err(DecodeError::BadRegister(r));
            }
        }
        let imm = i32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        Ok(Instr { op, a: bytes[1], b: bytes[2], c: bytes[3], imm })
    }

    /// The register the instruction writes through its `a` field, if any
    /// (pushes, pops, calls and returns also move sp, and `sys` may set
    /// registers: callers that care check those themselves).
    pub fn dest(&self) -> Option<u8> {
        match self.op.info().format {
            Format::R2
            | Format::R3
            | Format::RI
            | Format::LoadImm
            | Format::Load
            | Format::LinearLoad
            | Format::Atomic
            | Format::Dst => Some(self.a),
            Format::None
            | Format::Store
            | Format::LinearStore
            | Format::Branch
            | Format::BranchZ
            | Format::Jump
            | Format::Src
            | Format::Sys => None,
        }
    }

    /// The registers the instruction's fields name, read or written (sp
    /// moved by a push, pop, call or return is not named).
    pub fn named_regs(&self) -> impl Iterator<Item = u8> {
        [self.a, self.b, self.c].into_iter().take(self.op.info().format.named_fields())
    }

    /// The absolute target of a direct jump, branch or call.
    pub fn target(&self) -> Option<u64> {
        self.op.info().format.has_target().then_some(self.imm as u32 as u64)
    }
}

impl Format {
    /// How many of the register fields a, b, c (in that order) it names.
    pub const fn named_fields(self) -> usize {
        match self {
            Format::None | Format::Jump | Format::Sys => 0,
            Format::LoadImm | Format::Src | Format::Dst | Format::BranchZ => 1,
            Format::R2 | Format::RI | Format::Load | Format::Store | Format::Branch => 2,
            Format::R3 | Format::LinearLoad | Format::LinearStore | Format::Atomic => 3,
        }
    }

    /// Its immediate is an absolute code address (a direct jump, branch, call).
    pub const fn has_target(self) -> bool {
        matches!(self, Format::Jump | Format::Branch | Format::BranchZ)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        let mut seen = std::collections::HashSet::new();
        for &op in Opcode::ALL {
            assert!(seen.insert(op as u8), "duplicate opcode byte {:#x}", op as u8);
            assert_eq!(Opcode::from_byte(op as u8), Some(op));
            assert_eq!(Opcode::from_mnemonic(op.info().mnemonic), Some(op));
            let info = op.info();
            if matches!(info.format, Format::Jump | Format::Branch | Format::BranchZ) {
                assert!(info.ends_block, "{op:?} transfers control");
            }
            // A class and a format that say the same thing agree.
            assert_eq!(info.class == Class::Load, info.format == Format::Load, "{op:?}");
            assert_eq!(info.class == Class::Store, info.format == Format::Store, "{op:?}");
            assert_eq!(info.class == Class::Branch, matches!(info.format, Format::Branch | Format::BranchZ), "{op:?}");
            assert_eq!(info.class == Class::LinearLoad, info.format == Format::LinearLoad, "{op:?}");
            assert_eq!(info.class == Class::LinearStore, info.format == Format::LinearStore, "{op:?}");
            if info.class.accesses_memory() || info.class == Class::Div {
                assert!(info.can_trap, "{op:?} can trap");
            }
            if info.class.float_result() || info.class.reads_floats() {
                assert!(matches!(info.format, Format::R2 | Format::R3), "{op:?} has register operands");
            }
        }
        assert_eq!(Opcode::from_byte(0xff), None);
    }

    #[test]
    fn every_opcode_round_trips_through_its_encoding() {
        for &op in Opcode::ALL {
            let i = Instr::new(op, 3, 15, 7, -123_456);
            assert_eq!(Instr::decode(i.encode()), Ok(i));
        }
    }

    #[test]
    fn bad_encodings_are_rejected() {
        assert_eq!(Instr::decode([0xfe, 0, 0, 0, 0, 0, 0, 0]), Err(DecodeError::UnknownOpcode(0xfe)));
        assert_eq!(Instr::decode([0x10, 16, 0, 0, 0, 0, 0, 0]), Err(DecodeError::BadRegister(16)));
    }
}

#[cfg(test)]
mod doc_tests {
    use super::*;

    #[test]
    fn docs_isa_md_documents_every_instruction() {
        let doc = include_str!("../../docs/isa.md");
        for &op in Opcode::ALL {
            let m = op.info().mnemonic;
            assert!(doc.contains(&format!("`{m}`")), "docs/isa.md does not document {m}");
            assert!(doc.contains(&format!("{:#04x}", op as u8)), "docs/isa.md lacks opcode of {m}");
        }
    }
}
