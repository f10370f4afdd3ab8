//! Floating point, f64 and f32, bit for bit as x86-64's SSE computes it, so
//! that the translator can use SSE instructions and agree with the
//! interpreter on every bit, NaN payloads included:
//!
//! - an operation with a NaN operand returns that NaN, quieted (the first
//!   operand's if both are NaN);
//! - an invalid operation without a NaN operand (∞ - ∞, 0 × ∞, 0 / 0, √ of
//!   a negative number) returns the default NaN (sign set, quiet, no
//!   payload);
//! - `min`/`max` and the roundings follow the same rule for NaNs
//!   (WebAssembly's `fmin`, `fmax`, `floor`, `ceil`, `trunc`, `nearest`:
//!   -0 is below +0, ties round to even).
//!
//! f64 values are the register's 64 bits; f32 values its low 32 bits, the
//! upper ones zero in every result.

/// What the rules need of a float width.
trait Width: Copy {
    type F: Copy + PartialEq + PartialOrd;
    const SIGN: u64;
    const QUIET: u64;
    /// SSE's default NaN: sign set, quiet, no payload.
    const DEFAULT_NAN: u64;
    /// The bits of the width (the rest of the register is zero).
    const MASK: u64;
    fn f(x: u64) -> Self::F;
    fn bits(f: Self::F) -> u64;
    fn is_nan(f: Self::F) -> bool;
}

#[derive(Clone, Copy)]
struct W64;
#[derive(Clone, Copy)]
struct W32;

impl Width for W64 {
    type F = f64;
    const SIGN: u64 = 1 << 63;
    const QUIET: u64 = 1 << 51;
    const DEFAULT_NAN: u64 = 0xfff8_0000_0000_0000;
    const MASK: u64 = u64::MAX;
    fn f(x: u64) -> f64 {
        f64::from_bits(x)
    }
    fn bits(f: f64) -> u64 {
        f.to_bits()
    }
    fn is_nan(f: f64) -> bool {
        f.is_nan()
    }
}

impl Width for W32 {
    type F = f32;
    const SIGN: u64 = 1 << 31;
    const QUIET: u64 = 1 << 22;
    const DEFAULT_NAN: u64 = 0xffc0_0000;
    const MASK: u64 = 0xffff_ffff;
    fn f(x: u64) -> f32 {
        f32::from_bits(x as u32)
    }
    fn bits(f: f32) -> u64 {
        u64::from(f.to_bits())
    }
    fn is_nan(f: f32) -> bool {
        f.is_nan()
    }
}

/// x86's result for an operation on `x` and `y` (`y` = `x` for a unary
/// one) whose arithmetic result is `r`.
#[inline(always)]
fn sse<W: Width>(x: u64, y: u64, r: W::F) -> u64 {
    if W::is_nan(W::f(x)) {
        (x | W::QUIET) & W::MASK
    } else if W::is_nan(W::f(y)) {
        (y | W::QUIET) & W::MASK
    } else if W::is_nan(r) {
        W::DEFAULT_NAN
    } else {
        W::bits(r)
    }
}

/// [`sse`] for an arithmetic operation (`+ - × ÷ √`, the roundings) on
/// `x` and `y` (`y` = `x` for a unary one), whose result `r` is a NaN
/// whenever an operand is: a result that is not a NaN is the answer, found
/// with one test instead of three. The operands come as floats and the
/// NaN case is out of line, so the fast path never needs their bits: an
/// interpreter then loads them straight into float registers.
#[inline(always)]
fn arith<W: Width>(x: W::F, y: W::F, r: W::F) -> u64 {
    // (both arms a float: an f64 result is then stored from its float
    // register, without a move through a general one)
    let r = if W::is_nan(r) { nan_result::<W>(x, y) } else { r };
    W::bits(r)
}

/// The NaN an arithmetic operation on `x` and `y` returns (as a float:
/// x86-64 moves floats bit for bit, payloads and signalling NaNs too).
#[cold]
#[inline(never)]
fn nan_result<W: Width>(x: W::F, y: W::F) -> W::F {
    W::f(sse::<W>(W::bits(x), W::bits(y), W::f(W::DEFAULT_NAN)))
}

macro_rules! binary {
    ($( $(#[$doc:meta])* $name:ident, $name32:ident, $op:tt; )*) => {$(
        $(#[$doc])*
        #[inline(always)]
        pub fn $name(x: u64, y: u64) -> u64 {
            let (x, y) = (W64::f(x), W64::f(y));
            arith::<W64>(x, y, x $op y)
        }
        $(#[$doc])*
        #[inline(always)]
        pub fn $name32(x: u64, y: u64) -> u64 {
            let (x, y) = (W32::f(x), W32::f(y));
            arith::<W32>(x, y, x $op y)
        }
    )*};
}

binary! {
    fadd, fadd32, +;
    fsub, fsub32, -;
    fmul, fmul32, *;
    fdiv, fdiv32, /;
}

#[inline(always)]
pub fn fsqrt(x: u64) -> u64 {
    let x = W64::f(x);
    arith::<W64>(x, x, x.sqrt())
}
#[inline(always)]
pub fn fsqrt32(x: u64) -> u64 {
    let x = W32::f(x);
    arith::<W32>(x, x, x.sqrt())
}

/// `min`: a NaN operand wins (quieted); -0 is below +0.
#[inline(always)]
fn min_max<W: Width>(x: u64, y: u64, max: bool) -> u64 {
    let (a, b) = (W::f(x), W::f(y));
    if W::is_nan(a) || W::is_nan(b) {
        return sse::<W>(x, y, a);
    }
    if a == b {
        // equal: the same bits, or ±0, where the sign decides
        return (if max { x & y } else { x | y }) & W::MASK;
    }
    (if (a < b) != max { x } else { y }) & W::MASK
}
#[inline(always)]
pub fn fmin(x: u64, y: u64) -> u64 {
    min_max::<W64>(x, y, false)
}
#[inline(always)]
pub fn fmax(x: u64, y: u64) -> u64 {
    min_max::<W64>(x, y, true)
}
#[inline(always)]
pub fn fmin32(x: u64, y: u64) -> u64 {
    min_max::<W32>(x, y, false)
}
#[inline(always)]
pub fn fmax32(x: u64, y: u64) -> u64 {
    min_max::<W32>(x, y, true)
}

macro_rules! rounding {
    ($( $(#[$doc:meta])* $name:ident, $name32:ident, $f:ident; )*) => {$(
        $(#[$doc])*
        #[inline(always)]
        pub fn $name(x: u64) -> u64 {
            let x = W64::f(x);
            arith::<W64>(x, x, x.$f())
        }
        $(#[$doc])*
        #[inline(always)]
        pub fn $name32(x: u64) -> u64 {
            let x = W32::f(x);
            arith::<W32>(x, x, x.$f())
        }
    )*};
}

rounding! {
    ffloor, ffloor32, floor;
    fceil, fceil32, ceil;
    ftrunc, ftrunc32, trunc;
    /// Round to nearest, ties to even.
    fnearest, fnearest32, round_ties_even;
}

/// Sign bit operations (exact, NaNs untouched).
#[inline(always)]
pub fn fneg(x: u64) -> u64 {
    x ^ W64::SIGN
}
#[inline(always)]
pub fn fabs(x: u64) -> u64 {
    x & !W64::SIGN
}
#[inline(always)]
pub fn fcopysign(x: u64, y: u64) -> u64 {
    (x & !W64::SIGN) | (y & W64::SIGN)
}
#[inline(always)]
pub fn fneg32(x: u64) -> u64 {
    (x ^ W32::SIGN) & 0xffff_ffff
}
#[inline(always)]
pub fn fabs32(x: u64) -> u64 {
    x & !W32::SIGN & 0xffff_ffff
}
#[inline(always)]
pub fn fcopysign32(x: u64, y: u64) -> u64 {
    ((x & !W32::SIGN) | (y & W32::SIGN)) & 0xffff_ffff
}

/// Comparisons: false when either side is NaN (`fne`: true).
#[inline(always)]
pub fn feq(x: u64, y: u64) -> u64 {
    u64::from(W64::f(x) == W64::f(y))
}
#[inline(always)]
pub fn fne(x: u64, y: u64) -> u64 {
    u64::from(W64::f(x) != W64::f(y))
}
#[inline(always)]
pub fn flt(x: u64, y: u64) -> u64 {
    u64::from(W64::f(x) < W64::f(y))
}
#[inline(always)]
pub fn fle(x: u64, y: u64) -> u64 {
    u64::from(W64::f(x) <= W64::f(y))
}
#[inline(always)]
pub fn feq32(x: u64, y: u64) -> u64 {
    u64::from(W32::f(x) == W32::f(y))
}
#[inline(always)]
pub fn fne32(x: u64, y: u64) -> u64 {
    u64::from(W32::f(x) != W32::f(y))
}
#[inline(always)]
pub fn flt32(x: u64, y: u64) -> u64 {
    u64::from(W32::f(x) < W32::f(y))
}
#[inline(always)]
pub fn fle32(x: u64, y: u64) -> u64 {
    u64::from(W32::f(x) <= W32::f(y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::arch::x86_64::*;

    /// f64 values at the edges, NaN payloads (quiet and signalling, both
    /// signs) included.
    const F64: [u64; 14] = [
        0,
        1 << 63,
        0x3ff0_0000_0000_0000,
        0xbff8_0000_0000_0000,
        0x7ff0_0000_0000_0000,
        0xfff0_0000_0000_0000,
        0x7ff8_0000_0000_0000,
        0xfff8_0000_0000_1234,
        0x7ff0_0000_0000_0001,
        0xfff4_0000_0000_0abc,
        0x0000_0000_0000_0001,
        0x7fef_ffff_ffff_ffff,
        0x4004_0000_0000_0000,
        0xc00c_0000_0000_0000,
    ];
    const F32: [u64; 12] = [
        0,
        0x8000_0000,
        0x3f80_0000,
        0xbfc0_0000,
        0x7f80_0000,
        0xff80_0000,
        0x7fc0_0000,
        0xffc0_1234,
        0x7f80_0001,
        0xffa0_0abc,
        0x0000_0001,
        0x4020_0000,
    ];

    // SAFETY (of every intrinsic below): SSE2 and SSE4.1's round are
    // available on this machine's x86-64 (the tests run here); they read
    // and write only their operands.
    // (black_box: the compiler would fold constant operands with its own
    // NaN rules, which are not the CPU's)
    fn sse64(x: u64, y: u64, op: unsafe fn(__m128d, __m128d) -> __m128d) -> u64 {
        let (x, y) = std::hint::black_box((f64::from_bits(x), f64::from_bits(y)));
        // SAFETY: see above.
        unsafe { _mm_cvtsd_f64(std::hint::black_box(op(_mm_set_sd(x), _mm_set_sd(y)))).to_bits() }
    }
    fn sse32(x: u64, y: u64, op: unsafe fn(__m128, __m128) -> __m128) -> u64 {
        let (x, y) = std::hint::black_box((f32::from_bits(x as u32), f32::from_bits(y as u32)));
        // SAFETY: see above.
        unsafe { u64::from(_mm_cvtss_f32(std::hint::black_box(op(_mm_set_ss(x), _mm_set_ss(y)))).to_bits()) }
    }

    // SAFETY (of each): SSE2 and SSE4.1 instructions on register values;
    // the tests run on this machine's x86-64, which has them.
    unsafe fn sqrt_sd(a: __m128d, _: __m128d) -> __m128d {
        // SAFETY: see above.
        unsafe { _mm_sqrt_sd(a, a) }
    }
    unsafe fn floor_sd(a: __m128d, _: __m128d) -> __m128d {
        // SAFETY: see above.
        unsafe { _mm_floor_sd(a, a) }
    }
    unsafe fn ceil_sd(a: __m128d, _: __m128d) -> __m128d {
        // SAFETY: see above.
        unsafe { _mm_ceil_sd(a, a) }
    }
    unsafe fn sqrt_ss(a: __m128, _: __m128) -> __m128 {
        // SAFETY: see above.
        unsafe { _mm_sqrt_ss(a) }
    }

    #[test]
    fn arithmetic_is_sses_bit_for_bit() {
        for &x in &F64 {
            for &y in &F64 {
                assert_eq!(fadd(x, y), sse64(x, y, _mm_add_sd), "{x:#x} + {y:#x}");
                assert_eq!(fsub(x, y), sse64(x, y, _mm_sub_sd), "{x:#x} - {y:#x}");
                assert_eq!(fmul(x, y), sse64(x, y, _mm_mul_sd), "{x:#x} * {y:#x}");
                assert_eq!(fdiv(x, y), sse64(x, y, _mm_div_sd), "{x:#x} / {y:#x}");
            }
            assert_eq!(fsqrt(x), sse64(x, x, sqrt_sd), "sqrt {x:#x}");
            assert_eq!(ffloor(x), sse64(x, x, floor_sd), "floor {x:#x}");
            assert_eq!(fceil(x), sse64(x, x, ceil_sd), "ceil {x:#x}");
        }
        for &x in &F32 {
            for &y in &F32 {
                assert_eq!(fadd32(x, y), sse32(x, y, _mm_add_ss), "{x:#x} + {y:#x}");
                assert_eq!(fmul32(x, y), sse32(x, y, _mm_mul_ss), "{x:#x} * {y:#x}");
                assert_eq!(fdiv32(x, y), sse32(x, y, _mm_div_ss), "{x:#x} / {y:#x}");
            }
            assert_eq!(fsqrt32(x), sse32(x, x, sqrt_ss), "sqrt {x:#x}");
        }
    }

    #[test]
    fn min_max_and_roundings_follow_webassembly() {
        let (pz, nz, one) = (0u64, 1u64 << 63, 1.0f64.to_bits());
        assert_eq!((fmin(pz, nz), fmin(nz, pz), fmax(pz, nz), fmax(nz, pz)), (nz, nz, pz, pz));
        assert_eq!(fmin(one, 2.0f64.to_bits()), one);
        assert_eq!(fmax(0xfff4_0000_0000_0abc, one), 0xfffc_0000_0000_0abc, "a NaN wins, quieted");
        assert_eq!(fmin(one, 0x7ff8_0000_0000_0000), 0x7ff8_0000_0000_0000);
        assert_eq!(f64::from_bits(fnearest(2.5f64.to_bits())), 2.0);
        assert_eq!(f64::from_bits(fnearest(3.5f64.to_bits())), 4.0);
        assert_eq!(fnearest((-0.4f64).to_bits()), nz);
        assert_eq!(ftrunc((-0.7f64).to_bits()), nz);
        assert_eq!(fceil((-0.5f64).to_bits()), nz);
        assert_eq!(fmin32(0, 0x8000_0000), 0x8000_0000);
        assert_eq!(f32::from_bits(fnearest32(u64::from(0.5f32.to_bits())) as u32), 0.0);
        assert_eq!((fne(0x7ff8_0000_0000_0000, 0x7ff8_0000_0000_0000), feq(pz, nz)), (1, 1));
        assert_eq!(fcopysign(one, nz), (-1.0f64).to_bits());
        assert_eq!((fneg32(0x3f80_0000), fabs32(0xbf80_0000)), (0xbf80_0000, 0x3f80_0000));
        assert_eq!(fcopysign32(0x7fc0_0001, 0x8000_0000), 0xffc0_0001);
    }
}
