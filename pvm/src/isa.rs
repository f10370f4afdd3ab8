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
}

impl Class {
    /// The result is an f64 (engines may keep it in a float register).
    pub const fn float_result(self) -> bool {
        matches!(self, Class::Float | Class::IntToFloat)
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
        matches!(self, Class::Load | Class::Store | Class::Stack | Class::Call | Class::Return)
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

            /// The table row of this opcode.
            pub const fn info(self) -> OpInfo {
                match self {
                    $( $( Opcode::$variant => OpInfo {
                        mnemonic: $mnemonic,
                        format: Format::$format,
                        class: Class::$class,
                        ends_block: $flags.0,
                        can_trap: $flags.1,
                    }, )* )*
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
    /// Integer arithmetic, logic, shifts and comparisons.
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
    }
    /// Integer division and remainder (trap on a zero divisor).
    Div (DivOp) {
        DivS = 0x13, "divs", R3, TRAPS;
        DivU = 0x14, "divu", R3, TRAPS;
        RemS = 0x15, "rems", R3, TRAPS;
        RemU = 0x16, "remu", R3, TRAPS;
        DivSI = 0x33, "divsi", RI, TRAPS;
        DivUI = 0x34, "divui", RI, TRAPS;
        RemSI = 0x35, "remsi", RI, TRAPS;
        RemUI = 0x36, "remui", RI, TRAPS;
    }
    /// A float result from float operands (`fadd` .. `fsqrt`).
    Float (FloatOp) {
        FAdd = 0x50, "fadd", R3, PLAIN;
        FSub = 0x51, "fsub", R3, PLAIN;
        FMul = 0x52, "fmul", R3, PLAIN;
        FDiv = 0x53, "fdiv", R3, PLAIN;
        FSqrt = 0x57, "fsqrt", R2, PLAIN;
    }
    /// A 0/1 integer result from comparing float operands.
    FloatCompare (FloatCompareOp) {
        FEq = 0x54, "feq", R3, PLAIN;
        FLt = 0x55, "flt", R3, PLAIN;
        FLe = 0x56, "fle", R3, PLAIN;
    }
    /// Bit manipulation of an f64 in an integer register (`fneg`).
    FloatBits (FloatBitsOp) {
        FNeg = 0x58, "fneg", R2, PLAIN;
    }
    /// A float result from an integer operand (`itof`).
    IntToFloat (IntToFloatOp) {
        IToF = 0x59, "itof", R2, PLAIN;
    }
    /// An integer result from a float operand (`ftoi`).
    FloatToInt (FloatToIntOp) {
        FToI = 0x5a, "ftoi", R2, PLAIN;
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
    /// `push` and `pop`: memory at sp, and sp moves.
    Stack (StackOp) {
        Push = 0x6c, "push", Src, TRAPS;
        Pop = 0x6d, "pop", Dst, TRAPS;
    }
    /// `jmp` and `jr`.
    Jump (JumpOp) {
        Jmp = 0x70, "jmp", Jump, ENDS;
        Jr = 0x77, "jr", Src, ENDS_TRAPS;
    }
    /// Conditional branches.
    Branch (BranchOp) {
        Beq = 0x71, "beq", Branch, ENDS;
        Bne = 0x72, "bne", Branch, ENDS;
        Blt = 0x73, "blt", Branch, ENDS;
        Bge = 0x74, "bge", Branch, ENDS;
        Bltu = 0x75, "bltu", Branch, ENDS;
        Bgeu = 0x76, "bgeu", Branch, ENDS;
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
    /// `sys`.
    System (SystemOp) {
        Sys = 0x7f, "sys", Sys, ENDS_TRAPS;
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
            Format::R2 | Format::R3 | Format::RI | Format::LoadImm | Format::Load | Format::Dst => Some(self.a),
            Format::None | Format::Store | Format::Branch | Format::Jump | Format::Src | Format::Sys => None,
        }
    }

    /// The registers the instruction's fields name, read or written (sp
    /// moved by a push, pop, call or return is not named).
    pub fn named_regs(&self) -> impl Iterator<Item = u8> {
        let n = match self.op.info().format {
            Format::None | Format::Jump | Format::Sys => 0,
            Format::LoadImm | Format::Src | Format::Dst => 1,
            Format::R2 | Format::RI | Format::Load | Format::Store | Format::Branch => 2,
            Format::R3 => 3,
        };
        [self.a, self.b, self.c].into_iter().take(n)
    }

    /// The absolute target of a direct jump, branch or call.
    pub fn target(&self) -> Option<u64> {
        matches!(self.op.info().format, Format::Jump | Format::Branch).then_some(self.imm as u32 as u64)
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
            if matches!(info.format, Format::Jump | Format::Branch) {
                assert!(info.ends_block, "{op:?} transfers control");
            }
            // A class and a format that say the same thing agree.
            assert_eq!(info.class == Class::Load, info.format == Format::Load, "{op:?}");
            assert_eq!(info.class == Class::Store, info.format == Format::Store, "{op:?}");
            assert_eq!(info.class == Class::Branch, info.format == Format::Branch, "{op:?}");
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
        assert_eq!(Instr::decode([0xee, 0, 0, 0, 0, 0, 0, 0]), Err(DecodeError::UnknownOpcode(0xee)));
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
