import {startToldGuard, ToldGuard} from './guards.js'

/**
 * What must not outlive this process: staging folders, which hold plaintext (staging.ts), and the
 * marks that say what it does on an environment (activity.ts). One guard, a `sh` that this thread
 * starts with the first of them and tells of each as it comes, removes them all once the pipe from
 * this thread closes: when the process is gone, however it ended (SIGKILL and the OOM killer run no
 * cleanup here), or when a worker thread ends. Its owner removes each itself when it is done; at the
 * end, the guard finds those gone, and removes what is left.
 *
 * One guard a thread, not one a folder: a program start costs a fork of this process, which grows
 * with the process (the plugin runs in its host's), and a command makes several folders. It is a
 * thread's, not the process's, because a worker thread's pipes close as the thread ends: that
 * thread's folders go with it, and no other thread's.
 */
export type Leftover = 'folder' | 'mark'

/**
 * For each line `<kind> <path>` (the path in `printf %b`'s escapes, so that a name holds no space,
 * newline or quote), once the input ends: a folder is removed with what is in it; a mark is removed,
 * and its folder and the folder above go if that leaves them empty.
 *
 * What its owner removed is passed over with builtins alone: a long-lived process (a host, the tests)
 * tells its guard of every folder it ever made, and a program started for each of them at the end
 * cost two forks a folder (the decoding subshell and `rm`). A name with no escape needs no decoding.
 */
/* eslint-disable no-template-curly-in-string -- sh parameter expansions, not templates */
const SCRIPT = [
  'told=',
  'while IFS= read -r line; do told="$told$line',
  '"; done',
  'printf %s "$told" | while read -r kind escaped; do',
  '  case $escaped in',
  // The x keeps the newlines a name may end with, which $(...) would strip.
  '    *\\\\*) path=$(printf "%bx" "$escaped"); path=${path%x} ;;',
  '    *) path=$escaped ;;',
  '  esac',
  // Its owner removed it (a mark's owner, its folders too): nothing is left to do.
  '  [ -e "$path" ] || continue',
  '  case $kind in',
  '    folder) rm -rf -- "$path" ;;',
  '    mark) rm -f -- "$path"; rmdir -- "${path%/*}" "${path%/*/*}" ;;',
  '  esac',
  'done 2>/dev/null',
].join('\n')
/* eslint-enable no-template-curly-in-string */

/** What `ps` shows as the guard's name (its `$0`). */
const EXIT_GUARD_NAME = 'divio-exit-guard'

let guard: ToldGuard | undefined
/** What this thread still holds: told again to a guard started after the last one was ended. */
const held = new Set<string>()

/**
 * Has `path` removed once this thread is gone. Resolves once the guard has it: make the folder or
 * the mark after that, so that no moment is left where it exists and nothing would remove it.
 * `forget` once it is removed, which the guard then need not be told again.
 */
export async function removeAtExit(kind: Leftover, path: string): Promise<{forget(): void}> {
  const line = `${kind} ${printfEscaped(path)}`
  held.add(line)
  if (guard === undefined || guard.ended) {
    guard = startToldGuard(SCRIPT, EXIT_GUARD_NAME)
    await Promise.all([...held].map((each) => guard!.tell(each)))
  } else {
    await guard.tell(line)
  }

  return {
    forget() {
      held.delete(line)
    },
  }
}

/** Bytes that `printf %b` writes back as they are, and that the script's `read` keeps in one word. */
const PLAIN = /^[\w./-]$/

/** `path` as `printf %b` writes it back: each byte outside PLAIN as `\0` and three octal digits. */
export function printfEscaped(path: string): string {
  let escaped = ''
  for (const byte of Buffer.from(path)) {
    const character = String.fromCodePoint(byte)
    escaped += byte < 0x80 && PLAIN.test(character) ? character : `\\0${byte.toString(8).padStart(3, '0')}`
  }

  return escaped
}
