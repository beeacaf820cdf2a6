import {expect} from 'chai'
import nock from 'nock'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {parseS3Location} from '../../src/config/s3-location.js'
import {S3Store} from '../../src/store/s3.js'

/** CRC-32 (IEEE), bit by bit: node:zlib has it only from Node.js 20.15. */
function crc32(data: Buffer): number {
  let crc = 0xff_ff_ff_ff
  for (const byte of data) {
    crc ^= byte
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0xed_b8_83_20 : crc >>> 1
  }

  return (crc ^ 0xff_ff_ff_ff) >>> 0
}

/** The payload of an aws-chunked body: its chunks joined, and its trailer's headers. */
function decodeAwsChunked(body: Buffer): {payload: Buffer; trailer: Record<string, string>} {
  const chunks: Buffer[] = []
  let at = 0
  for (;;) {
    const lineEnd = body.indexOf('\r\n', at)
    const size = Number.parseInt(body.subarray(at, lineEnd).toString('latin1'), 16)
    at = lineEnd + 2
    if (size === 0) break
    chunks.push(body.subarray(at, at + size))
    at += size + 2
  }

  const trailer: Record<string, string> = {}
  for (const line of body.subarray(at).toString('latin1').split('\r\n')) {
    const colon = line.indexOf(':')
    if (colon > 0) trailer[line.slice(0, colon)] = line.slice(colon + 1)
  }

  return {payload: Buffer.concat(chunks), trailer}
}

/**
 * What AWS itself receives for a staged file (no S3 here: nock takes the request as S3 would). The
 * SDK sends a streamed body to AWS in aws-chunked encoding with a CRC32 in a trailer, which it needs
 * the body's length for; s3rver, like other S3-compatible services, gets the plain body.
 */
describe('a staged file sent to S3 itself (nock)', () => {
  let folder: string

  before(() => {
    nock.disableNetConnect()
    folder = mkdtempSync(join(tmpdir(), 's3-put-file-'))
  })

  afterEach(() => nock.cleanAll())

  after(() => {
    nock.enableNetConnect()
    rmSync(folder, {force: true, recursive: true})
  })

  it('is one PutObject of the file, with its length, storage class, encryption and checksum', async () => {
    const url = new URL('s3://KEY:wJalr-s3cr3t-Value@shop-backups/live?region=eu-central-1')
    const store = new S3Store(parseS3Location(url, 'store'), 's3://shop-backups/live')
    const data = randomBytes(300_007)
    const path = join(folder, 'pack')
    writeFileSync(path, data)
    let request: undefined | {body: Buffer; headers: Record<string, string | string[] | undefined>; path: string}
    const scope = nock('https://shop-backups.s3.eu-central-1.amazonaws.com')
      .put(/.*/)
      .reply(function (path, body) {
        request = {body: Buffer.from(body as string, 'hex'), headers: this.req.headers, path}
        return [200, '', {ETag: '"etag"'}]
      })

    expect(await store.putFile('shop/live/packs/pack.age', path)).to.deep.equal({bytes: data.length})
    expect(scope.isDone()).to.equal(true)
    expect(request!.path).to.equal('/live/shop/live/packs/pack.age?x-id=PutObject')
    expect(request!.headers).to.include({
      'content-encoding': 'aws-chunked',
      'x-amz-decoded-content-length': String(data.length),
      'x-amz-server-side-encryption': 'AES256',
      'x-amz-storage-class': 'STANDARD_IA',
      'x-amz-trailer': 'x-amz-checksum-crc32',
    })
    const {payload, trailer} = decodeAwsChunked(request!.body)
    expect(payload.equals(data)).to.equal(true)
    const checksum = Buffer.alloc(4)
    checksum.writeUInt32BE(crc32(data))
    expect(trailer['x-amz-checksum-crc32']).to.equal(checksum.toString('base64'))
  })
})
