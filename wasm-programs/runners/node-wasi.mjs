// Runs a WASI (preview1) command module under Node's node:wasi, as a whole
// process: its exit status is the module's.
//
//   node [--liftoff --no-wasm-tier-up | --no-liftoff] node-wasi.mjs [--env K=V]... FILE.wasm [ARG]...
//
// The module sees FILE.wasm as argv[0], then the ARGs; its environment is
// exactly the --env pairs; stdin, stdout and stderr are the process's own.
import { readFileSync } from 'node:fs';
import { WASI } from 'node:wasi';

const argv = process.argv.slice(2);
const env = {};
while (argv[0] === '--env' && argv.length > 1) {
  const pair = argv[1];
  const eq = pair.indexOf('=');
  if (eq < 1) {
    process.stderr.write(`node-wasi: --env wants KEY=VALUE, got ${pair}\n`);
    process.exit(2);
  }
  env[pair.slice(0, eq)] = pair.slice(eq + 1);
  argv.splice(0, 2);
}
if (argv.length === 0) {
  process.stderr.write('usage: node node-wasi.mjs [--env K=V]... FILE.wasm [ARG]...\n');
  process.exit(2);
}
const wasi = new WASI({ version: 'preview1', args: argv, env, returnOnExit: true });
// Each WASI function is called through a JS closure. Called straight from
// wasm, V8's fast API path hands node:wasi a stale memory pointer once the
// module has grown its memory, and Node 20 crashes (SIGSEGV) or drops the
// output: nodejs/node#51303 (also `--no-turbo-fast-api-calls` avoids it).
const imports = wasi.getImportObject();
const wasiImport = imports.wasi_snapshot_preview1;
const wrapped = {};
for (const [name, f] of Object.entries(wasiImport)) {
  wrapped[name] = (...args) => f(...args);
}
imports.wasi_snapshot_preview1 = wrapped;
const module = await WebAssembly.compile(readFileSync(argv[0]));
const instance = await WebAssembly.instantiate(module, imports);
process.exitCode = wasi.start(instance);
