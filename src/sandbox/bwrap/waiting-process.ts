import type { SpawnOptions } from '../driver.js';

/**
 * The waiting program of a pre-started bwrap process, and the spec it reads.
 *
 * A spare sandbox starts its first process ahead of the call: bubblewrap with
 * the sandbox's full hardening, whose command is this fixed bash script. It
 * blocks reading one spec from fd {@link SPEC_FD} (a pipe only the runner
 * holds), then changes to the call's cwd, exports the call's environment and
 * `exec`s the call's argv, so the call's process keeps the stdin/stdout/stderr
 * pipes, the namespaces, the cgroups and the uid the waiter already has. The
 * call then costs one exec instead of wrapper + setpriv + bwrap setup.
 *
 * The spec is data, never code: NUL-terminated fields read with
 * `read -r -d ''` (no escapes, no word splitting, no globbing), counts checked
 * to be digits before arithmetic, and values only ever expanded inside
 * double quotes. Environment values (credentials) travel through the pipe,
 * so they never appear in any command line (/proc/<pid>/cmdline).
 */

/** The fd, inside the sandbox, on which the waiter reads its spec. */
export const SPEC_FD = 4;

/**
 * Fixed text: nothing from a call is ever put into it.
 *
 * Why the SHLVL nameref: bash's `exec` builtin re-exports SHLVL (decremented)
 * into the new program's environment, which a process run by bwrap directly
 * never has. Pointing SHLVL at an array element sends that write to a variable
 * bash cannot export (arrays never are), so the program sees exactly the
 * environment given, as under bwrap: the call's variables plus PWD.
 *
 * Why the lookup before exec: bwrap reports a cwd or program it cannot use as
 * `bwrap: …` with exit 1; the waiter says the same, so a first run on a spare
 * ends the way any other run does.
 */
export const WAITER_SCRIPT = [
  'set -f',
  "IFS= read -r -d '' -u 4 __sandbox_cwd || exit 125",
  "IFS= read -r -d '' -u 4 __sandbox_n || exit 125",
  "[[ $__sandbox_n =~ ^[0-9]{1,6}$ ]] || exit 125",
  '__sandbox_env=()',
  "for ((__sandbox_i = 0; __sandbox_i < __sandbox_n; __sandbox_i++)); do IFS= read -r -d '' -u 4 __sandbox_v || exit 125; __sandbox_env+=(\"$__sandbox_v\"); done",
  "IFS= read -r -d '' -u 4 __sandbox_n || exit 125",
  "[[ $__sandbox_n =~ ^[1-9][0-9]{0,6}$ ]] || exit 125",
  '__sandbox_argv=()',
  "for ((__sandbox_i = 0; __sandbox_i < __sandbox_n; __sandbox_i++)); do IFS= read -r -d '' -u 4 __sandbox_v || exit 125; __sandbox_argv+=(\"$__sandbox_v\"); done",
  'exec 4<&-',
  'builtin cd -- "$__sandbox_cwd" 2>/dev/null || { builtin printf "bwrap: Can\'t chdir to %s: No such file or directory\\n" "$__sandbox_cwd" >&2; exit 1; }',
  'unset PWD OLDPWD SHLVL _ __sandbox_v',
  "declare -a __sandbox_shlvl; declare -n SHLVL='__sandbox_shlvl[0]'",
  'for __sandbox_v in "${__sandbox_env[@]}"; do builtin export -- "$__sandbox_v"; done',
  'builtin export PWD="$__sandbox_cwd"',
  'builtin type -P -- "${__sandbox_argv[0]}" >/dev/null || { builtin printf "bwrap: execvp %s: No such file or directory\\n" "${__sandbox_argv[0]}" >&2; exit 1; }',
  'exec -- "${__sandbox_argv[@]}"',
].join('\n');

/**
 * The command bwrap runs in a pre-started process. `--norc`: bash reads
 * ~/.bashrc even when non-interactive if its stdin is a socket (the rshd
 * heuristic), and Node's stdio pipes are socketpairs.
 */
export const WAITER_ARGV = ['/bin/bash', '--norc', '--noprofile', '-c', WAITER_SCRIPT, 'sandbox-waiter'];

/**
 * Environment names bash gives a meaning of its own (dynamic, read-only, or
 * changing the shell as it runs), and the waiter's own variables: a run whose
 * environment names one of them takes the ordinary path (a new bwrap process),
 * where bwrap sets them verbatim.
 */
const BASH_SPECIAL = new Set([
  '_', 'SHLVL', 'PWD', 'OLDPWD', 'IFS', 'RANDOM', 'SRANDOM', 'SECONDS', 'LINENO', 'EPOCHSECONDS', 'EPOCHREALTIME',
  'HISTCMD', 'FUNCNAME', 'GROUPS', 'DIRSTACK', 'UID', 'EUID', 'PPID', 'SHELLOPTS', 'BASHOPTS', 'OPTIND', 'OPTARG',
  'POSIXLY_CORRECT', 'COMP_WORDBREAKS', 'PIPESTATUS', 'CDPATH', 'GLOBIGNORE', 'TMOUT', 'HOSTNAME', 'HOSTTYPE',
  'MACHTYPE', 'OSTYPE', 'PS4', 'ENV', 'BASH_ENV',
]);
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Whether a run can be handed to the waiter with the same result bwrap would
 * give it; otherwise the caller starts a new bwrap process. Never a question
 * of safety (the spec is data either way), only of exact equivalence.
 */
export function waiterCanRun(argv: string[], env: Record<string, string>, cwd: string): boolean {
  if (argv.length === 0 || argv.length > 1_000_000) return false;
  if (argv.some((a) => a.includes('\0')) || cwd.includes('\0')) return false;
  for (const [k, v] of Object.entries(env)) {
    if (!NAME.test(k) || BASH_SPECIAL.has(k) || k.startsWith('BASH') || k.startsWith('__sandbox_') || v.includes('\0')) return false;
  }
  return true;
}

/** The bytes of one spec: cwd, environment count and `K=V` entries, argv count and entries, each NUL-terminated. */
export function encodeSpec(options: Required<Pick<SpawnOptions, 'argv' | 'env'>> & { cwd: string }): Buffer {
  const env = Object.entries(options.env).map(([k, v]) => `${k}=${v}`);
  const fields = [options.cwd, String(env.length), ...env, String(options.argv.length), ...options.argv];
  return Buffer.from(fields.map((f) => `${f}\0`).join(''), 'utf8');
}
