//! The lexer of the assembler: one line of `.pasm` to tokens.

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Int(i128),
    Float(f64),
    Str(Vec<u8>),
    Punct(char),
}

#[derive(Clone, Debug)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) col: usize,
}

pub(super) type Res<T> = Result<T, (usize, String)>;

fn escape(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>, col: usize) -> Res<u8> {
    let Some((_, c)) = chars.next() else { return Err((col, "unfinished escape".into())) };
    Ok(match c {
        'n' => b'\n',
        't' => b'\t',
        'r' => b'\r',
        '0' => 0,
        '\\' => b'\\',
        '"' => b'"',
        '\'' => b'\'',
        'x' => {
            let h: String = (0..2).filter_map(|_| chars.next().map(|(_, c)| c)).collect();
            u8::from_str_radix(&h, 16).map_err(|_| (col, format!("bad \\x escape {h:?}: expected two hex digits")))?
        }
        other => return Err((col, format!("unknown escape \\{other}"))),
    })
}

pub(super) fn lex(line: &str) -> Res<Vec<Token>> {
    let mut out = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        let col = i + 1;
        if c.is_whitespace() {
            chars.next();
        } else if c == ';' || c == '#' {
            break;
        } else if c.is_ascii_alphabetic() || c == '_' || c == '.' {
            let mut s = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                    s.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(Token { tok: Tok::Ident(s), col });
        } else if c.is_ascii_digit() {
            let mut s = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c.is_ascii_alphanumeric()
                    || c == '.'
                    || c == '_'
                    || ((c == '-' || c == '+') && s.ends_with(['e', 'E']) && !s.starts_with("0x"))
                {
                    s.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            let s = s.replace('_', "");
            let tok = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                i128::from_str_radix(h, 16).map(Tok::Int).ok()
            } else if let Some(b) = s.strip_prefix("0b") {
                i128::from_str_radix(b, 2).map(Tok::Int).ok()
            } else if s.contains(['.', 'e', 'E']) {
                s.parse::<f64>().map(Tok::Float).ok()
            } else {
                s.parse::<i128>().map(Tok::Int).ok()
            };
            out.push(Token { tok: tok.ok_or((col, format!("malformed number {s:?}")))?, col });
        } else if c == '"' {
            chars.next();
            let mut s = Vec::new();
            loop {
                match chars.next() {
                    None => return Err((col, "unterminated string: expected a closing \"".into())),
                    Some((_, '"')) => break,
                    Some((_, '\\')) => s.push(escape(&mut chars, col)?),
                    Some((_, c)) => s.extend(c.to_string().as_bytes()),
                }
            }
            out.push(Token { tok: Tok::Str(s), col });
        } else if c == '\'' {
            chars.next();
            let v = match chars.next() {
                Some((_, '\\')) => escape(&mut chars, col)?,
                Some((_, c)) if c.is_ascii() => c as u8,
                _ => return Err((col, "expected one ASCII character in quotes".into())),
            };
            if chars.next().map(|(_, c)| c) != Some('\'') {
                return Err((col, "expected a closing ' after the character".into()));
            }
            out.push(Token { tok: Tok::Int(i128::from(v)), col });
        } else if ",[]+-:".contains(c) {
            chars.next();
            out.push(Token { tok: Tok::Punct(c), col });
        } else {
            return Err((col, format!("unexpected character {c:?}")));
        }
    }
    Ok(out)
}
