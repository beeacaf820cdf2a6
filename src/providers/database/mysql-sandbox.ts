import {Readable} from 'node:stream'

/**
 * The first line of a dump by mariadb-dump 10.5.25, 10.6.18, 10.11.8, 11.4.2 and later: a command to
 * MariaDB's client to refuse shell escapes (`\!`) in what follows. MySQL's own client reads `\-` as an
 * unknown command and stops at line 1 ("Unknown command '\-'"), and restores nothing.
 */
const SANDBOX_LINE = /^\/\*M!999999\\- enable the sandbox mode \*\/ *\r?$/

/** Whether `version` (the client's `--version`) is MariaDB's client, which reads the sandbox line. */
export function readsSandboxLine(version: string): boolean {
  return /mariadb/i.test(version)
}

/** The first line of a dump, as far as the sandbox line can reach: past it, no line is the one. */
const LONGEST_FIRST_LINE = 256

/**
 * `sql` without mariadb-dump's sandbox line, for MySQL's client: everything else as it came. The dump
 * in the store keeps the line (it is what the signed checksum covers).
 */
export function withoutSandboxLine(sql: Readable): Readable {
  return Readable.from(
    (async function* () {
      let head: Buffer = Buffer.alloc(0)
      let decided = false
      for await (const chunk of sql as AsyncIterable<Buffer>) {
        if (decided) {
          yield chunk
          continue
        }

        head = head.length === 0 ? chunk : Buffer.concat([head, chunk])
        const newline = head.indexOf(0x0a)
        if (newline === -1 && head.length < LONGEST_FIRST_LINE) continue
        decided = true
        yield newline !== -1 && SANDBOX_LINE.test(head.subarray(0, newline).toString('latin1'))
          ? head.subarray(newline + 1)
          : head
      }

      if (!decided && head.length > 0) yield SANDBOX_LINE.test(head.toString('latin1')) ? Buffer.alloc(0) : head
    })(),
    {objectMode: false},
  )
}
