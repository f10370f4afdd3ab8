//! The assembler for `.pasm` text.
//!
//! ```text
//! ; comment (also #)
//! .entry main            ; entry label (default: main, else the first instruction)
//! .text
//! main:   li   r1, 37    ; li takes any 64-bit constant (one or two instructions)
//!         call fib
//!         sys  3         ; print_int(r1)
//! .data
//! msg:    .asciz "fib = "
//! ```
//!
//! Registers are `r0`-`r15`, with `sp` for `r15`. Immediates are numbers
//! (decimal, `0x`, `0b`, `'c'`), labels, or sums of them (`table+8`).
//! Memory operands are `[reg]`, `[reg+imm]`, `[reg-imm]`. Directives:
//! `.text .data .entry .byte .half .word .quad .double .ascii .asciz .zero
//! .align .org`. Pseudo-instructions: `lif rd, 1.5` (load a float
//! constant). Errors name file:line:column and what was expected.

use std::collections::HashMap;

use crate::image::{Image, Section, CODE_BASE};
use crate::isa::{Format, Instr, Opcode, INSTR_SIZE, SP};

mod lex;
use lex::{lex, Res, Tok, Token};

/// No image can be larger than the largest memory (`--mem` 2047 MiB).
const MAX_IMAGE: u64 = crate::machine::MAX_MEM_MIB << 20;

/// Why a sum of numbers and labels is rejected before it overflows.
const OUT_OF_RANGE: &str = "the expression's value is out of range (no field holds more than 64 bits)";

/// An assembly error with its position.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}:{col}: {msg}")]
pub struct AsmError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

/// An immediate: a constant plus optional labels, resolved in pass 2.
#[derive(Clone, Debug, Default)]
struct Expr {
    constant: i128,
    labels: Vec<(bool, String, usize)>, // (negated, name, column)
}

/// A parsed statement, waiting for label addresses.
#[derive(Clone, Debug)]
enum Item {
    Instr {
        op: Opcode,
        a: u8,
        b: u8,
        c: u8,
        imm: Expr,
        line: usize,
    },
    /// li/lih pair for a 64-bit constant known in pass 1.
    Wide {
        rd: u8,
        value: u64,
    },
    Data {
        width: usize,
        values: Vec<Expr>,
        line: usize,
    },
    Bytes(Vec<u8>),
    /// Zero bytes (`.zero`, `.align`, `.org`), materialised only at the end.
    Zero(u64),
}

impl Item {
    fn size(&self) -> u64 {
        match self {
            Item::Instr { .. } => INSTR_SIZE,
            Item::Wide { value, .. } => {
                if i32::try_from(*value as i64).is_ok() {
                    INSTR_SIZE
                } else {
                    2 * INSTR_SIZE
                }
            }
            Item::Data { width, values, .. } => (*width * values.len()) as u64,
            Item::Bytes(b) => b.len() as u64,
            Item::Zero(n) => *n,
        }
    }
}

struct Cursor<'a> {
    toks: &'a [Token],
    pos: usize,
    end_col: usize,
}

impl Cursor<'_> {
    fn col(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end_col, |t| t.col)
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.tok.clone());
        self.pos += 1;
        t
    }
    fn expect(&mut self, c: char, what: &str) -> Res<()> {
        let col = self.col();
        match self.next() {
            Some(Tok::Punct(p)) if p == c => Ok(()),
            _ => Err((col, format!("expected {what}"))),
        }
    }
    fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }
    fn reg(&mut self) -> Res<u8> {
        let col = self.col();
        match self.next() {
            Some(Tok::Ident(s)) => {
                parse_reg(&s).ok_or((col, format!("expected a register (r0-r15 or sp), found {s:?}")))
            }
            _ => Err((col, "expected a register (r0-r15 or sp)".into())),
        }
    }
    fn expr(&mut self) -> Res<Expr> {
        let mut e = Expr::default();
        let mut negate = false;
        if self.peek() == Some(&Tok::Punct('-')) {
            self.next();
            negate = true;
        }
        loop {
            let col = self.col();
            match self.next() {
                Some(Tok::Int(v)) => {
                    let term = if negate { -v } else { v };
                    e.constant = e.constant.checked_add(term).ok_or((col, OUT_OF_RANGE.into()))?;
                }
                Some(Tok::Ident(s)) if parse_reg(&s).is_none() => e.labels.push((negate, s, col)),
                _ => return Err((col, "expected a number or a label".into())),
            }
            match self.peek() {
                Some(Tok::Punct('+')) => negate = false,
                Some(Tok::Punct('-')) => negate = true,
                _ => return Ok(e),
            }
            self.next();
        }
    }
    fn float(&mut self) -> Res<f64> {
        let col = self.col();
        let neg = self.peek() == Some(&Tok::Punct('-'));
        if neg {
            self.next();
        }
        let v = match self.next() {
            Some(Tok::Float(f)) => f,
            Some(Tok::Int(i)) => i as f64,
            Some(Tok::Ident(s)) if s == "inf" => f64::INFINITY,
            Some(Tok::Ident(s)) if s == "nan" => f64::NAN,
            _ => return Err((col, "expected a floating-point number".into())),
        };
        Ok(if neg { -v } else { v })
    }
    /// `[reg]`, `[reg+expr]`, `[reg-expr]`
    fn mem(&mut self) -> Res<(u8, Expr)> {
        self.expect('[', "a memory operand like [r1+8]")?;
        let base = self.reg()?;
        let e = match self.peek() {
            Some(Tok::Punct('+')) => {
                self.next();
                self.expr()?
            }
            Some(Tok::Punct('-')) => {
                self.next();
                let col = self.col();
                let mut e = self.expr()?;
                e.constant = e.constant.checked_neg().ok_or((col, OUT_OF_RANGE.into()))?;
                e.labels.iter_mut().for_each(|l| l.0 = !l.0);
                e
            }
            _ => Expr::default(),
        };
        self.expect(']', "] to close the memory operand")?;
        Ok((base, e))
    }
    fn comma(&mut self) -> Res<()> {
        self.expect(',', "a comma between operands")
    }
}

fn parse_reg(s: &str) -> Option<u8> {
    if s == "sp" {
        return Some(SP);
    }
    let n: u8 = s.strip_prefix('r')?.parse().ok()?;
    (n < 16 && !s[1..].starts_with('0') || s == "r0").then_some(n)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sec {
    Text,
    Data,
}

fn constant(e: &Expr) -> Option<i128> {
    e.labels.is_empty().then_some(e.constant)
}

/// Assembles `source`; `file` names it in errors.
pub fn assemble(file: &str, source: &str) -> Result<Image, AsmError> {
    let err = |line: usize, (col, msg): (usize, String)| AsmError { file: file.to_string(), line, col, msg };
    let mut text: Vec<Item> = Vec::new();
    let mut data: Vec<Item> = Vec::new();
    let mut text_size = 0u64;
    let mut data_size = 0u64;
    let mut labels: HashMap<String, (Sec, u64, usize)> = HashMap::new();
    let mut entry: Option<(Expr, usize)> = None;
    let mut sec = Sec::Text;
    let mut data_org: Option<u64> = None;
    let mut text_org: Option<u64> = None;

    for (n, raw) in source.lines().enumerate() {
        let line = n + 1;
        let toks = lex(raw).map_err(|e| err(line, e))?;
        let mut cur = Cursor { toks: &toks, pos: 0, end_col: raw.len() + 1 };
        // labels
        while let (Some(Tok::Ident(name)), Some(Tok::Punct(':'))) =
            (cur.peek().cloned(), toks.get(cur.pos + 1).map(|t| t.tok.clone()))
        {
            let col = cur.col();
            let offset = if sec == Sec::Text { text_size } else { data_size };
            if let Some(&(_, _, prev)) = labels.get(&name) {
                return Err(err(line, (col, format!("label {name:?} is already defined on line {prev}"))));
            }
            labels.insert(name, (sec, offset, line));
            cur.pos += 2;
        }
        let col = cur.col();
        let Some(Tok::Ident(word)) = cur.next() else {
            if toks.len() > cur.pos.saturating_sub(1) && cur.pos <= toks.len() {
                return Err(err(line, (col, "expected an instruction, a directive or a label".into())));
            }
            continue;
        };
        let mut items = Vec::new();
        let r: Res<()> = (|| {
            match word.as_str() {
                ".text" => sec = Sec::Text,
                ".data" => sec = Sec::Data,
                ".entry" => entry = Some((cur.expr()?, line)),
                ".byte" | ".half" | ".word" | ".quad" => {
                    let width = match word.as_str() {
                        ".byte" => 1,
                        ".half" => 2,
                        ".word" => 4,
                        _ => 8,
                    };
                    let mut values = vec![cur.expr()?];
                    while !cur.at_end() {
                        cur.comma()?;
                        values.push(cur.expr()?);
                    }
                    items.push(Item::Data { width, values, line });
                }
                ".double" => {
                    let mut bytes = cur.float()?.to_le_bytes().to_vec();
                    while !cur.at_end() {
                        cur.comma()?;
                        bytes.extend(cur.float()?.to_le_bytes());
                    }
                    items.push(Item::Bytes(bytes));
                }
                ".ascii" | ".asciz" => {
                    let col = cur.col();
                    let Some(Tok::Str(mut s)) = cur.next() else {
                        return Err((col, "expected a string in double quotes".into()));
                    };
                    if word == ".asciz" {
                        s.push(0);
                    }
                    items.push(Item::Bytes(s));
                }
                ".zero" | ".align" | ".org" => {
                    let col = cur.col();
                    let v = constant(&cur.expr()?)
                        .and_then(|v| u64::try_from(v).ok())
                        .filter(|&v| v < MAX_IMAGE)
                        .ok_or((
                            col,
                            format!("{word} needs a non-negative number below {MAX_IMAGE:#x} (the largest memory)"),
                        ))?;
                    let here = if sec == Sec::Text { text_size } else { data_size };
                    let pad = match word.as_str() {
                        ".zero" => v,
                        ".align" if v.is_power_of_two() => here.next_multiple_of(v) - here,
                        ".align" => return Err((col, ".align needs a power of two".into())),
                        _ if sec == Sec::Text => {
                            // Where the code starts: before its first instruction only.
                            if text_size != 0 || text_org.is_some() {
                                return Err((col, ".org in .text sets where the code starts: put it once, before the first instruction".into()));
                            }
                            if !v.is_multiple_of(INSTR_SIZE) {
                                return Err((col, format!(".org {v:#x} in .text is not 8-byte aligned")));
                            }
                            text_org = Some(v);
                            0
                        }
                        _ => {
                            let base = *data_org.get_or_insert(v);
                            let target = v.checked_sub(base).filter(|&t| t >= here);
                            target.ok_or((col, format!(".org {v:#x} is behind the current data address")))? - here
                        }
                    };
                    if sec == Sec::Text && pad % INSTR_SIZE != 0 {
                        return Err((col, format!("{word} in .text must keep instructions 8-byte aligned")));
                    }
                    items.push(Item::Zero(pad));
                }
                "lif" => {
                    let rd = cur.reg()?;
                    cur.comma()?;
                    items.push(Item::Wide { rd, value: cur.float()?.to_bits() });
                }
                m => {
                    let op =
                        Opcode::from_mnemonic(m).ok_or((col, format!("unknown instruction or directive {m:?}")))?;
                    items.push(parse_operands(&mut cur, op, line)?);
                }
            }
            if !cur.at_end() {
                return Err((cur.col(), "unexpected text after the statement".into()));
            }
            Ok(())
        })();
        r.map_err(|e| err(line, e))?;
        for item in items {
            let is_text_item = matches!(item, Item::Instr { .. } | Item::Wide { .. });
            if is_text_item && sec != Sec::Text {
                return Err(err(line, (col, "instructions belong in .text".into())));
            }
            if sec == Sec::Text {
                text_size += item.size();
                text.push(item);
            } else {
                data_size += item.size();
                data.push(item);
            }
            if text_size + data_size >= MAX_IMAGE {
                return Err(err(
                    line,
                    (col, format!("the program grew past {MAX_IMAGE:#x} bytes, the largest memory")),
                ));
            }
        }
    }
    if !text_size.is_multiple_of(INSTR_SIZE) {
        return Err(err(
            source.lines().count(),
            (1, "data in .text left the code misaligned: pad it to 8 bytes".into()),
        ));
    }

    let code_base = text_org.unwrap_or(CODE_BASE);
    let code_end = code_base + text_size;
    let data_base = data_org.unwrap_or(code_end.next_multiple_of(16));
    if data_base < code_end && data_base + data_size > code_base && data_size > 0 {
        return Err(err(1, (1, format!(".org {data_base:#x} places data inside the code"))));
    }
    let addr_of = |sec: Sec, off: u64| if sec == Sec::Text { code_base + off } else { data_base + off };
    let resolve = |e: &Expr, line: usize| -> Result<i128, AsmError> {
        let mut v = e.constant;
        for (neg, name, col) in &e.labels {
            let &(s, off, _) =
                labels.get(name).ok_or_else(|| err(line, (*col, format!("undefined label {name:?}"))))?;
            let a = i128::from(addr_of(s, off));
            v = v.checked_add(if *neg { -a } else { a }).ok_or_else(|| err(line, (*col, OUT_OF_RANGE.into())))?;
        }
        Ok(v)
    };

    let mut code = Vec::with_capacity(text_size as usize);
    for item in &text {
        match item {
            Item::Instr { op, a, b, c, imm, line } => {
                let v = resolve(imm, *line)?;
                let imm = i32::try_from(v)
                    .or_else(|_| u32::try_from(v).map(|u| u as i32))
                    .map_err(|_| err(*line, (1, format!("immediate {v} does not fit in 32 bits"))))?;
                if matches!(op, Opcode::Li) && i32::try_from(v).is_err() {
                    return Err(err(
                        *line,
                        (1, format!("li value {v} out of range; use a constant (li takes any 64-bit number) or lih")),
                    ));
                }
                code.extend(Instr::new(*op, *a, *b, *c, imm).encode());
            }
            Item::Wide { rd, value } => {
                code.extend(Instr::new(Opcode::Li, *rd, 0, 0, *value as i32).encode());
                if i32::try_from(*value as i64).is_err() {
                    code.extend(Instr::new(Opcode::Lih, *rd, 0, 0, (*value >> 32) as i32).encode());
                }
            }
            Item::Data { .. } | Item::Bytes(_) | Item::Zero(_) => emit_data(item, &mut code, &resolve)?,
        }
    }
    let mut bytes = Vec::with_capacity(data_size as usize);
    for item in &data {
        emit_data(item, &mut bytes, &resolve)?;
    }
    let entry = match entry {
        Some((e, line)) => u64::try_from(resolve(&e, line)?).map_err(|_| err(line, (1, "negative entry".into())))?,
        None => labels.get("main").map_or(code_base, |&(s, off, _)| addr_of(s, off)),
    };
    let data = if bytes.is_empty() { vec![] } else { vec![Section { addr: data_base, bytes }] };
    Ok(Image::new(entry, Section { addr: code_base, bytes: code }, data))
}

fn emit_data(
    item: &Item,
    out: &mut Vec<u8>,
    resolve: &dyn Fn(&Expr, usize) -> Result<i128, AsmError>,
) -> Result<(), AsmError> {
    match item {
        Item::Data { width, values, line } => {
            for v in values {
                let x = resolve(v, *line)?;
                out.extend(&(x as u64).to_le_bytes()[..*width]);
            }
        }
        Item::Bytes(b) => out.extend(b),
        Item::Zero(n) => out.resize(out.len() + *n as usize, 0),
        Item::Instr { .. } | Item::Wide { .. } => {}
    }
    Ok(())
}

fn parse_operands(cur: &mut Cursor<'_>, op: Opcode, line: usize) -> Res<Item> {
    let (mut a, mut b, mut c, mut imm) = (0, 0, 0, Expr::default());
    match op.info().format {
        Format::None => {}
        Format::R2 => {
            a = cur.reg()?;
            cur.comma()?;
            b = cur.reg()?;
        }
        Format::R3 => {
            a = cur.reg()?;
            cur.comma()?;
            b = cur.reg()?;
            cur.comma()?;
            c = cur.reg()?;
        }
        Format::RI => {
            a = cur.reg()?;
            cur.comma()?;
            b = cur.reg()?;
            cur.comma()?;
            imm = cur.expr()?;
        }
        Format::LoadImm => {
            a = cur.reg()?;
            cur.comma()?;
            imm = cur.expr()?;
            // A 64-bit constant known now becomes li (+ lih) as needed.
            if op == Opcode::Li {
                if let Some(v) = constant(&imm) {
                    let value = i64::try_from(v).or_else(|_| u64::try_from(v).map(|u| u as i64));
                    let value = value.map_err(|_| (cur.col(), format!("constant {v} does not fit in 64 bits")))?;
                    return Ok(Item::Wide { rd: a, value: value as u64 });
                }
            }
        }
        Format::Load | Format::Store => {
            a = cur.reg()?;
            cur.comma()?;
            (b, imm) = cur.mem()?;
        }
        Format::LinearLoad | Format::LinearStore | Format::Atomic => {
            a = cur.reg()?;
            cur.comma()?;
            (b, imm) = cur.mem()?;
            cur.comma()?;
            c = cur.reg()?;
        }
        Format::BranchZ => {
            a = cur.reg()?;
            cur.comma()?;
            imm = cur.expr()?;
        }
        Format::Branch => {
            a = cur.reg()?;
            cur.comma()?;
            b = cur.reg()?;
            cur.comma()?;
            imm = cur.expr()?;
        }
        Format::Jump | Format::Sys => imm = cur.expr()?,
        Format::Src | Format::Dst => a = cur.reg()?,
    }
    Ok(Item::Instr { op, a, b, c, imm, line })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disasm;

    #[test]
    fn assembles_labels_data_and_wide_constants() {
        let src = "
            .entry start
            .text
            start: li r1, msg        ; a data label
                   li r2, 0x123456789
                   lif r3, 1.5
                   ld64 r4, [r1+8]
                   beq r1, r2, start
                   sys 0
            .data
            msg:   .asciz \"hi\\n\"
                   .align 8
                   .quad msg+1, -1
                   .double 2.0
        ";
        let img = assemble("t.pasm", src).unwrap();
        assert_eq!(img.entry, CODE_BASE);
        let code: Vec<Instr> =
            img.code.bytes.chunks(8).map(|c| Instr::decode(c.try_into().unwrap()).unwrap()).collect();
        let data_base = img.data[0].addr;
        assert_eq!(data_base, (CODE_BASE + 8 * 8).next_multiple_of(16));
        assert_eq!(code[0], Instr::new(Opcode::Li, 1, 0, 0, data_base as i32));
        assert_eq!((code[1].op, code[2].op, code[2].imm), (Opcode::Li, Opcode::Lih, 1));
        assert_eq!((code[3].op, code[4].op), (Opcode::Li, Opcode::Lih)); // 1.5 has high bits only
        assert_eq!(code[5], Instr::new(Opcode::Ld64, 4, 1, 0, 8));
        assert_eq!(code[6].imm as u64, CODE_BASE);
        let d = &img.data[0].bytes;
        assert_eq!(&d[..4], b"hi\n\0");
        assert_eq!(u64::from_le_bytes(d[8..16].try_into().unwrap()), data_base + 1);
        assert_eq!(u64::from_le_bytes(d[16..24].try_into().unwrap()), u64::MAX);
        assert_eq!(f64::from_le_bytes(d[24..32].try_into().unwrap()), 2.0);
    }

    #[test]
    fn org_in_text_places_the_code_and_data_may_sit_below_it() {
        let src = ".text\n.org 0xff000\nmain: li r1, end\n jmp main\nend:\n.data\n.org 0x2000\nx: .quad main\n";
        let img = assemble("t.pasm", src).unwrap();
        assert_eq!((img.entry, img.code.addr, img.code.bytes.len()), (0xff000, 0xff000, 16));
        let code: Vec<Instr> =
            img.code.bytes.chunks(8).map(|c| Instr::decode(c.try_into().unwrap()).unwrap()).collect();
        assert_eq!((code[0].imm, code[1].imm), (0xff010, 0xff000));
        assert_eq!((img.data[0].addr, &img.data[0].bytes[..]), (0x2000, &0xff000u64.to_le_bytes()[..]));
        let e = assemble("t.pasm", "nop\n.org 0x2000\n").unwrap_err();
        assert!(e.msg.contains("before the first instruction"), "{e}");
        let e = assemble("t.pasm", ".org 0x2004\nnop\n").unwrap_err();
        assert!(e.msg.contains("not 8-byte aligned"), "{e}");
        let e = assemble("t.pasm", ".org 0x2000\nnop\nnop\n.data\n.org 0x2008\n.byte 1\n").unwrap_err();
        assert!(e.msg.contains("inside the code"), "{e}");
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let e = assemble("x.pasm", "main:\n  add r1, r2\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 13));
        assert_eq!(e.to_string(), "x.pasm:2:13: expected a comma between operands");
        let e = assemble("x.pasm", "  frob r1\n").unwrap_err();
        assert_eq!(e.msg, "unknown instruction or directive \"frob\"");
        let e = assemble("x.pasm", "  jmp nowhere\n").unwrap_err();
        assert_eq!((e.line, e.col, e.msg.as_str()), (1, 7, "undefined label \"nowhere\""));
        let e = assemble("x.pasm", "  mov r16, r1\n").unwrap_err();
        assert!(e.msg.starts_with("expected a register"), "{e}");
        let e = assemble("x.pasm", "a:\na: nop\n").unwrap_err();
        assert!(e.msg.contains("already defined on line 1"), "{e}");
        let e = assemble("x.pasm", ".data\n add r1, r1, r1\n").unwrap_err();
        assert_eq!(e.msg, "instructions belong in .text");
        let e = assemble("x.pasm", " .ascii \"abc\n").unwrap_err();
        assert!(e.msg.starts_with("unterminated string"), "{e}");
        let e = assemble("x.pasm", ".data\n .zero 0x100000000\n").unwrap_err();
        assert!(e.msg.contains("the largest memory"), "{e}");
        let e = assemble("x.pasm", ".data\n .zero 0x40000000\n .zero 0x40000000\n").unwrap_err();
        assert!(e.msg.contains("grew past"), "{e}");
        let e = assemble("x.pasm", " ld64 r1, r2\n").unwrap_err();
        assert!(e.msg.starts_with("expected a memory operand"), "{e}");
    }

    #[test]
    fn sums_too_large_for_any_field_are_errors_not_overflows() {
        // Found with the pvm_asm fuzz target (fuzz/regressions/pvm_asm/):
        // each panicked on an i128 overflow in a debug build.
        let max = i128::MAX;
        for (src, col) in [
            (format!("main: li r1, {max}+1\n"), 54),
            (format!("main: ld64 r1, [r2-0-{max}-1]\n"), 20),
            (format!("x: .quad x+{max}\n"), 10),
        ] {
            let e = assemble("x.pasm", &src).unwrap_err();
            assert_eq!((e.line, e.col, e.msg.as_str()), (1, col, OUT_OF_RANGE), "{src}");
        }
        assert!(assemble("x.pasm", &format!("main: li r1, {max}-{max}\n")).is_ok());
    }

    #[test]
    fn disassembly_reassembles_to_the_same_image() {
        let src = "main: li r1, -5\n push r1\n pop r2\n ld8s r3, [sp-16]\n st32 r3, [r2+4]\n jr r3\n fsqrt r1, r2\n sys 5\n.data\n .byte 1,2,3\n";
        let img = assemble("a.pasm", src).unwrap();
        let text = disasm::disassemble(&img);
        let again = assemble("b.pasm", &text).unwrap();
        assert_eq!(again, img, "{text}");
    }
}
