//! WebAssembly values as an embedder passes and receives them.

use std::fmt;

use super::module::ValType;

/// A value: integers as their bits, floats as their bits (so NaN payloads
/// survive the trip).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    I32(u32),
    I64(u64),
    F32(u32),
    F64(u64),
}

impl Value {
    pub fn ty(&self) -> ValType {
        match self {
            Value::I32(_) => ValType::I32,
            Value::I64(_) => ValType::I64,
            Value::F32(_) => ValType::F32,
            Value::F64(_) => ValType::F64,
        }
    }

    /// The register bits (32-bit values zero-extended).
    pub fn bits(&self) -> u64 {
        match *self {
            Value::I32(v) | Value::F32(v) => u64::from(v),
            Value::I64(v) | Value::F64(v) => v,
        }
    }

    /// The value of type `ty` a register holds (32-bit values: its low half).
    pub fn from_bits(ty: ValType, r: u64) -> Value {
        match ty {
            ValType::I32 => Value::I32(r as u32),
            ValType::I64 => Value::I64(r),
            ValType::F32 => Value::F32(r as u32),
            ValType::F64 => Value::F64(r),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::I32(v) => write!(f, "{} : i32", v as i32),
            Value::I64(v) => write!(f, "{} : i64", v as i64),
            Value::F32(v) => write!(f, "{:?} : f32", f32::from_bits(v)),
            Value::F64(v) => write!(f, "{:?} : f64", f64::from_bits(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip_and_zero_extend() {
        let nan = Value::F32(0x7fc0_0001);
        assert_eq!(Value::from_bits(ValType::F32, nan.bits()), nan);
        assert_eq!(Value::I32(u32::MAX).bits(), 0xffff_ffff);
        assert_eq!(Value::from_bits(ValType::I32, u64::MAX), Value::I32(u32::MAX));
        assert_eq!(Value::I64(-1i64 as u64).to_string(), "-1 : i64");
        assert_eq!(Value::F64(1.5f64.to_bits()).to_string(), "1.5 : f64");
    }
}
