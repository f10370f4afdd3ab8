//! Division by a constant as a multiply and shifts (Hacker's Delight,
//! ch. 10), so `divsi`/`remsi` avoid the slow `idiv` and `divui`/`remui`
//! the slow `div`. The translator emits exactly [`div_by_constant`]'s and
//! [`divu_by_constant`]'s steps.

/// How to divide by a constant `d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstDiv {
    /// d = 1: q = n.
    Identity,
    /// d = -1: q = -n (wrapping).
    Negate,
    /// |d| = 2^k: q = (n + ((n >> 63) >>> (64 - k))) >> k, negated if d < 0.
    Shift { k: u32, negative: bool },
    /// q = mulhi(n, m) (+ n if d > 0 and m < 0, - n if d < 0 and m > 0) >> s,
    /// plus 1 if negative.
    Magic { m: i64, s: u32, add: i8 },
}

/// The plan for `d` (`None` for 0, which traps).
pub fn plan(d: i64) -> Option<ConstDiv> {
    match d {
        0 => None,
        1 => Some(ConstDiv::Identity),
        -1 => Some(ConstDiv::Negate),
        _ if d.unsigned_abs().is_power_of_two() => {
            Some(ConstDiv::Shift { k: d.unsigned_abs().trailing_zeros(), negative: d < 0 })
        }
        _ => {
            let (m, s) = magic(d);
            let add = if d > 0 && m < 0 {
                1
            } else if d < 0 && m > 0 {
                -1
            } else {
                0
            };
            Some(ConstDiv::Magic { m, s, add })
        }
    }
}

/// The magic multiplier and shift for signed 64-bit division by `d`
/// (|d| >= 2, not a power of two).
fn magic(d: i64) -> (i64, u32) {
    const TWO63: u64 = 1 << 63;
    let ad = d.unsigned_abs();
    let t = TWO63 + ((d as u64) >> 63);
    let anc = t - 1 - t % ad;
    let mut p = 63u32;
    let (mut q1, mut r1) = (TWO63 / anc, TWO63 - (TWO63 / anc) * anc);
    let (mut q2, mut r2) = (TWO63 / ad, TWO63 - (TWO63 / ad) * ad);
    loop {
        p += 1;
        q1 = q1.wrapping_mul(2);
        r1 = r1.wrapping_mul(2);
        if r1 >= anc {
            q1 = q1.wrapping_add(1);
            r1 = r1.wrapping_sub(anc);
        }
        q2 = q2.wrapping_mul(2);
        r2 = r2.wrapping_mul(2);
        if r2 >= ad {
            q2 = q2.wrapping_add(1);
            r2 = r2.wrapping_sub(ad);
        }
        let delta = ad - r2;
        if !(q1 < delta || (q1 == delta && r1 == 0)) {
            break;
        }
    }
    let m = q2.wrapping_add(1) as i64;
    (if d < 0 { m.wrapping_neg() } else { m }, p - 64)
}

/// The quotient the plan computes, step by step as the emitted code does.
pub fn div_by_constant(n: i64, plan: ConstDiv) -> i64 {
    match plan {
        ConstDiv::Identity => n,
        ConstDiv::Negate => n.wrapping_neg(),
        ConstDiv::Shift { k, negative } => {
            let bias = (((n >> 63) as u64) >> (64 - k)) as i64;
            let q = n.wrapping_add(bias) >> k;
            if negative {
                q.wrapping_neg()
            } else {
                q
            }
        }
        ConstDiv::Magic { m, s, add } => {
            let mut q = ((i128::from(n) * i128::from(m)) >> 64) as i64;
            q = match add {
                1 => q.wrapping_add(n),
                -1 => q.wrapping_sub(n),
                _ => q,
            };
            q >>= s;
            q.wrapping_add(((q as u64) >> 63) as i64)
        }
    }
}

/// How to divide unsigned by a constant `d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UConstDiv {
    /// d = 2^k: q = n >> k.
    Shift { k: u32 },
    /// With l = ceil(log2 d) and m = floor(2^64 (2^l - d) / d) + 1 (which
    /// fits 64 bits): t = mulhi(n, m); q = (t + ((n - t) >> 1)) >> (l - 1)
    /// (Granlund and Montgomery, "Division by invariant integers using
    /// multiplication", 1994, fig. 4.1; n - t cannot wrap and the sum
    /// cannot carry).
    Magic { m: u64, l: u32 },
}

/// The unsigned plan for `d` (`None` for 0, which traps).
pub fn plan_unsigned(d: u64) -> Option<UConstDiv> {
    match d {
        0 => None,
        _ if d.is_power_of_two() => Some(UConstDiv::Shift { k: d.trailing_zeros() }),
        _ => {
            let l = 64 - (d - 1).leading_zeros();
            // 2^l - d < d, so the quotient is below 2^64.
            let excess = ((1u128 << l) - u128::from(d)) << 64;
            let m = (excess / u128::from(d)) as u64 + 1;
            Some(UConstDiv::Magic { m, l })
        }
    }
}

/// The unsigned quotient the plan computes, step by step as the emitted
/// code does.
pub fn divu_by_constant(n: u64, plan: UConstDiv) -> u64 {
    match plan {
        UConstDiv::Shift { k } => n >> k,
        UConstDiv::Magic { m, l } => {
            let t = ((u128::from(n) * u128::from(m)) >> 64) as u64;
            (t + ((n - t) >> 1)) >> (l - 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threads::placement::Rng;

    #[test]
    fn matches_wrapping_division_for_many_divisors_and_dividends() {
        let mut rng = Rng::new(0x2545_f491_4f6c_dd1d);
        let mut values = vec![0i64, 1, -1, 2, -2, 7, -7, 100, i64::MAX, i64::MIN, i64::MIN + 1, i64::MAX - 1];
        for _ in 0..2000 {
            let x = rng.next_u64();
            values.push(x as i64);
            values.push((x as i64) >> (x % 63));
        }
        let divisors =
            [2i64, 3, 5, 7, 10, 100, 641, -2, -3, -7, -100, 1 << 40, -(1 << 40), i64::MAX, i64::MIN, 1, -1, 6, 1000003];
        for &d in &divisors {
            let p = plan(d).unwrap();
            for &n in &values {
                assert_eq!(div_by_constant(n, p), n.wrapping_div(d), "{n} / {d} with {p:?}");
            }
        }
        assert_eq!(plan(0), None);
    }

    #[test]
    fn unsigned_plans_match_division_for_every_divisor_an_immediate_gives() {
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut values = vec![0u64, 1, 2, 3, 6, 7, 8, u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1, (1 << 63) + 1];
        values.extend([0xffff_ffff, 0x1_0000_0000, 0xffff_ffff_8000_0000, 0xffff_ffff_7fff_ffff]);
        for _ in 0..2000 {
            let x = rng.next_u64();
            values.push(x);
            values.push(x >> (x % 64));
        }
        // `divui`'s divisor is its immediate sign-extended: 1..2^31 - 1 and
        // 2^64 - 2^31 .. 2^64 - 1; a few of each edge, every small one, and
        // random ones; plus divisors no immediate gives (the plan's own edges).
        let mut divisors: Vec<u64> = (1..=1200).collect();
        divisors.extend([0x7fff_ffff, 0x4000_0000, 0x4000_0001, 0x3fff_ffff, 641, 1_000_003, 6_700_417]);
        divisors.extend([u64::MAX, u64::MAX - 1, u64::MAX - 6, 0xffff_ffff_8000_0000, 0xffff_ffff_8000_0001]);
        divisors.extend([1 << 63, (1 << 63) + 1, (1 << 63) - 1, 0xffff_ffff, 0x1_0000_0001, 3 << 62]);
        for _ in 0..300 {
            let x = rng.next_u64();
            divisors.push(i64::from(x as i32) as u64);
            divisors.push(x >> (x % 64));
        }
        for &d in divisors.iter().filter(|&&d| d != 0) {
            let p = plan_unsigned(d).unwrap();
            for &n in &values {
                assert_eq!(divu_by_constant(n, p), n / d, "{n} / {d} with {p:?}");
            }
        }
        assert_eq!(plan_unsigned(0), None);
        assert_eq!(plan_unsigned(1), Some(UConstDiv::Shift { k: 0 }));
        assert_eq!(plan_unsigned(1 << 63), Some(UConstDiv::Shift { k: 63 }));
    }
}
