//! Host functions a module may import: WASI preview 1 and the test
//! suite's `spectest` printers, each with a fixed number (`sys HOST + n`)
//! and type.

use super::module::{FuncType, ValType};

/// First number of the `spectest` functions.
pub const SPECTEST_BASE: u32 = 256;

const I: ValType = ValType::I32;
const L: ValType = ValType::I64;
const F: ValType = ValType::F32;
const D: ValType = ValType::F64;

/// `wasi_snapshot_preview1`, in number order: name, parameters, results.
pub const WASI: &[(&str, &[ValType], &[ValType])] = &[
    ("args_get", &[I, I], &[I]),
    ("args_sizes_get", &[I, I], &[I]),
    ("environ_get", &[I, I], &[I]),
    ("environ_sizes_get", &[I, I], &[I]),
    ("clock_res_get", &[I, I], &[I]),
    ("clock_time_get", &[I, L, I], &[I]),
    ("fd_advise", &[I, L, L, I], &[I]),
    ("fd_allocate", &[I, L, L], &[I]),
    ("fd_close", &[I], &[I]),
    ("fd_datasync", &[I], &[I]),
    ("fd_fdstat_get", &[I, I], &[I]),
    ("fd_fdstat_set_flags", &[I, I], &[I]),
    ("fd_fdstat_set_rights", &[I, L, L], &[I]),
    ("fd_filestat_get", &[I, I], &[I]),
    ("fd_filestat_set_size", &[I, L], &[I]),
    ("fd_filestat_set_times", &[I, L, L, I], &[I]),
    ("fd_pread", &[I, I, I, L, I], &[I]),
    ("fd_prestat_get", &[I, I], &[I]),
    ("fd_prestat_dir_name", &[I, I, I], &[I]),
    ("fd_pwrite", &[I, I, I, L, I], &[I]),
    ("fd_read", &[I, I, I, I], &[I]),
    ("fd_readdir", &[I, I, I, L, I], &[I]),
    ("fd_renumber", &[I, I], &[I]),
    ("fd_seek", &[I, L, I, I], &[I]),
    ("fd_sync", &[I], &[I]),
    ("fd_tell", &[I, I], &[I]),
    ("fd_write", &[I, I, I, I], &[I]),
    ("path_create_directory", &[I, I, I], &[I]),
    ("path_filestat_get", &[I, I, I, I, I], &[I]),
    ("path_filestat_set_times", &[I, I, I, I, L, L, I], &[I]),
    ("path_link", &[I, I, I, I, I, I, I], &[I]),
    ("path_open", &[I, I, I, I, I, L, L, I, I], &[I]),
    ("path_readlink", &[I, I, I, I, I, I], &[I]),
    ("path_remove_directory", &[I, I, I], &[I]),
    ("path_rename", &[I, I, I, I, I, I], &[I]),
    ("path_symlink", &[I, I, I, I, I], &[I]),
    ("path_unlink_file", &[I, I, I], &[I]),
    ("poll_oneoff", &[I, I, I, I], &[I]),
    ("proc_exit", &[I], &[]),
    ("proc_raise", &[I], &[I]),
    ("sched_yield", &[], &[I]),
    ("random_get", &[I, I], &[I]),
    ("sock_accept", &[I, I, I], &[I]),
    ("sock_recv", &[I, I, I, I, I, I], &[I]),
    ("sock_send", &[I, I, I, I, I], &[I]),
    ("sock_shutdown", &[I, I], &[I]),
];

/// The `spectest` module's functions, numbered from [`SPECTEST_BASE`].
pub const SPECTEST: &[(&str, &[ValType], &[ValType])] = &[
    ("print", &[], &[]),
    ("print_i32", &[I], &[]),
    ("print_i64", &[L], &[]),
    ("print_f32", &[F], &[]),
    ("print_f64", &[D], &[]),
    ("print_i32_f32", &[I, F], &[]),
    ("print_f64_f64", &[D, D], &[]),
];

/// The WASI module names a program may import from.
pub const WASI_MODULES: [&str; 2] = ["wasi_snapshot_preview1", "wasi_unstable"];

/// Which host functions an embedder offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostSet {
    pub wasi: bool,
    pub spectest: bool,
}

/// The number and type of host function `module.name`, if offered.
pub fn lookup(set: HostSet, module: &str, name: &str) -> Option<(u32, FuncType)> {
    let find = |table: &[(&str, &[ValType], &[ValType])], base: u32| {
        table.iter().position(|(n, _, _)| *n == name).map(|i| {
            let (_, p, r) = table[i];
            (base + i as u32, FuncType { params: p.to_vec(), results: r.to_vec() })
        })
    };
    if set.wasi && WASI_MODULES.contains(&module) {
        return find(WASI, 0);
    }
    if set.spectest && module == "spectest" {
        return find(SPECTEST, SPECTEST_BASE);
    }
    None
}

/// The name of host function `n`.
pub fn name(n: u32) -> &'static str {
    if n >= SPECTEST_BASE {
        SPECTEST.get((n - SPECTEST_BASE) as usize).map_or("?", |f| f.0)
    } else {
        WASI.get(n as usize).map_or("?", |f| f.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_respect_the_offered_set() {
        let both = HostSet { wasi: true, spectest: true };
        let (n, ty) = lookup(both, "wasi_snapshot_preview1", "fd_write").unwrap();
        assert_eq!((name(n), ty.params.len(), ty.results.len()), ("fd_write", 4, 1));
        assert_eq!(lookup(both, "spectest", "print_i32").map(|(n, _)| name(n)), Some("print_i32"));
        assert_eq!(lookup(HostSet { wasi: false, spectest: true }, "wasi_unstable", "fd_write"), None);
        assert_eq!(lookup(both, "env", "f"), None);
    }
}
