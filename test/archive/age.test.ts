import * as vectors from 'cctv-age'
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {pipeline} from 'node:stream/promises'
import {inflateSync} from 'node:zlib'

import {generateIdentity, parseIdentity, parseRecipient} from '../../src/archive/age-keys.js'
import {AgeError, AgeSealer, createDecryptStream, createEncryptStream} from '../../src/archive/age.js'
import {lendingSource} from '../helpers/lending-source.js'
import {requireTool, through} from '../helpers/tools.js'

const CHUNK = 64 * 1024
const sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17]

describe('age', () => {
  const {fileContents, identity} = generateIdentity()
  const folder = mkdtempSync(join(tmpdir(), 'age-test-'))
  const identityFile = join(folder, 'identity.txt')
  writeFileSync(identityFile, fileContents(new Date()), {mode: 0o600})

  describe('round trip through our own encrypter and decrypter', () => {
    for (const size of sizes) {
      it(`preserves ${size} bytes, whatever the input chunking`, async () => {
        const plaintext = randomBytes(size)
        const pieces = splitRandomly(plaintext)
        const sealed = await through(pieces, createEncryptStream([identity.publicKey]))
        const opened = await through(splitRandomly(sealed), createDecryptStream([identity]))
        expect(opened.equals(plaintext)).to.equal(true)
      })
    }

    it('seals borrowed input, which the caller overwrites after each call, as it seals a copy', async () => {
      for (const size of [...sizes, 5 * CHUNK + 3]) {
        const plaintext = randomBytes(size)
        const sealer = new AgeSealer([identity.publicKey])
        const scratch = Buffer.allocUnsafe(3 * CHUNK)
        const sealed: Buffer[] = []
        for (const piece of splitRandomly(plaintext)) {
          for (let offset = 0; offset < piece.length; offset += scratch.length) {
            const part = piece.subarray(offset, offset + scratch.length)
            part.copy(scratch)
            sealed.push(
              ...sealer.update(scratch.subarray(0, part.length), {borrowed: true}).map((out) => Buffer.from(out)),
            )
            scratch.fill(0xa5)
          }
        }

        sealed.push(...sealer.final())
        const opened = await through(splitRandomly(Buffer.concat(sealed)), createDecryptStream([identity]))
        expect(opened.equals(plaintext)).to.equal(true)
      }
    })

    it('opens lent chunks, giving each back once it holds no view of it', async () => {
      for (const size of [0, 1, CHUNK, 5 * CHUNK + 3, 40 * CHUNK]) {
        const plaintext = randomBytes(size)
        const sealed = await through([plaintext], createEncryptStream([identity.publicKey]))
        for (const chunkBytes of [7, 100, CHUNK + 16, 100_000]) {
          const source = lendingSource(sealed, chunkBytes)
          const opened: Buffer[] = []
          await pipeline(source.stream, createDecryptStream([identity]), async (chunks: AsyncIterable<Buffer>) => {
            for await (const chunk of chunks) opened.push(chunk)
          })
          expect(Buffer.concat(opened).equals(plaintext), `${size} bytes in chunks of ${chunkBytes}`).to.equal(true)
          // Most: the rest are those the stream's input buffer held when they were made.
          const chunks = Math.ceil(sealed.length / chunkBytes)
          if (chunks >= 8) expect(source.reused()).to.be.above(chunks / 2)
        }
      }
    })

    it('encrypts to several recipients, each of which can decrypt', async () => {
      const other = generateIdentity().identity
      const sealed = await through(Buffer.from('shared'), createEncryptStream([identity.publicKey, other.publicKey]))
      expect((await through(sealed, createDecryptStream([other]))).toString()).to.equal('shared')
      expect((await through(sealed, createDecryptStream([identity]))).toString()).to.equal('shared')
    })

    it('refuses a wrong identity with a no-match error', async () => {
      const sealed = await through(Buffer.from('secret'), createEncryptStream([identity.publicKey]))
      const error = await through(sealed, createDecryptStream([generateIdentity().identity])).catch((error_) => error_)
      expect(error).to.be.instanceOf(AgeError)
      expect((error as AgeError).kind).to.equal('no-match')
    })

    it('detects a flipped byte in the payload and a truncated file', async () => {
      const sealed = await through(randomBytes(3 * CHUNK), createEncryptStream([identity.publicKey]))
      const flipped = Buffer.from(sealed)
      flipped[flipped.length - 100] ^= 0x01
      const flippedError = await through(flipped, createDecryptStream([identity])).catch((error_) => error_)
      expect((flippedError as AgeError).kind).to.equal('payload')

      const truncated = sealed.subarray(0, sealed.length - (CHUNK + 16))
      const truncatedError = await through(truncated, createDecryptStream([identity])).catch((error_) => error_)
      expect((truncatedError as AgeError).kind).to.equal('payload')
    })
  })

  describe('interoperability with the stock age CLI', function () {
    before(function () {
      requireTool(this, 'age', 'age')
    })

    for (const size of sizes) {
      it(`age -d reads our ${size}-byte file, and we read age -r output`, async () => {
        const plaintext = randomBytes(size)
        const sealed = await through(plaintext, createEncryptStream([identity.publicKey]))
        const decrypted = execFileSync('age', ['-d', '-i', identityFile], {input: sealed, maxBuffer: 1 << 26})
        expect(decrypted.equals(plaintext)).to.equal(true)

        const theirs = execFileSync('age', ['-r', identity.recipient], {input: plaintext, maxBuffer: 1 << 26})
        expect((await through(theirs, createDecryptStream([identity]))).equals(plaintext)).to.equal(true)
      })
    }

    it('writes identity files that age-keygen -y reads back to the same recipient', function () {
      requireTool(this, 'age-keygen', 'age')
      const recipient = execFileSync('age-keygen', ['-y', identityFile]).toString().trim()
      expect(recipient).to.equal(identity.recipient)
      expect(parseRecipient(recipient).equals(identity.publicKey)).to.equal(true)
    })
  })

  describe('community test vectors (cctv-age)', () => {
    // Armored files, scrypt passphrases and post-quantum (hybrid) recipients are formats this tool
    // never writes or reads, so their vectors do not apply; every other vector must behave as specified.
    const applicable = Object.keys(vectors as Record<string, Uint8Array>).filter(
      (name) => !/^(armor|scrypt|hybrid)/.test(name),
    )

    it('covers the X25519, stream, stanza and HMAC families', () => {
      expect(applicable.length).to.be.greaterThan(60)
    })

    for (const name of applicable) {
      it(name, async () => {
        const vector = parseVector((vectors as Record<string, Uint8Array>)[name])
        const identities = vector.identities.map((line) => parseIdentity(line))
        const result = await through(vector.body, createDecryptStream(identities)).then(
          (plaintext) => ({ok: true as const, plaintext}),
          (error: unknown) => ({error, ok: false as const}),
        )
        if (vector.expect === 'success') {
          expect(result.ok, result.ok ? '' : String((result as {error: unknown}).error)).to.equal(true)
          if (result.ok) expect(createHash('sha256').update(result.plaintext).digest('hex')).to.equal(vector.payload)
        } else {
          expect(result.ok, `expected ${vector.expect}`).to.equal(false)
          if (!result.ok) expect(result.error).to.be.instanceOf(AgeError)
        }
      })
    }
  })
})

function splitRandomly(data: Buffer): Buffer[] {
  const pieces: Buffer[] = []
  let offset = 0
  while (offset < data.length) {
    const size = 1 + Math.floor(Math.random() * 40_000)
    pieces.push(data.subarray(offset, offset + size))
    offset += size
  }

  return pieces
}

function parseVector(bytes: Uint8Array): {body: Buffer; expect: string; identities: string[]; payload?: string} {
  const buffer = Buffer.from(bytes)
  const split = buffer.indexOf('\n\n')
  const headers = buffer.subarray(0, split).toString('utf8').split('\n')
  const fields = headers.map((line) => line.split(': ') as [string, string])
  const body = buffer.subarray(split + 2)
  const compressed = fields.some(([key, value]) => key === 'compressed' && value === 'zlib')
  return {
    body: compressed ? inflateSync(body) : body,
    expect: fields.find(([key]) => key === 'expect')![1],
    identities: fields.filter(([key]) => key === 'identity').map(([, value]) => value),
    payload: fields.find(([key]) => key === 'payload')?.[1],
  }
}
