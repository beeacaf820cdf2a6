import {Readable, Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {putFileAsStream} from './file-source.js'
import {assertValidKey, ObjectInfo, ObjectNotFoundError, PutFileOptions, Store} from './port.js'

/** An in-process store for tests of the services; it keeps whole objects in memory. */
export class MemoryStore implements Store {
  readonly description = 'memory'
  readonly local = true
  private readonly objects = new Map<string, {data: Buffer; modifiedAt: Date}>()

  constructor(private readonly clock: () => Date = () => new Date()) {}

  async delete(key: string): Promise<void> {
    this.objects.delete(key)
  }

  async get(key: string): Promise<Readable> {
    const object = this.objects.get(key)
    if (object === undefined) throw new ObjectNotFoundError(key)
    return Readable.from([object.data])
  }

  async isEmpty(): Promise<boolean> {
    return this.objects.size === 0
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const keys = [...this.objects.keys()].filter((key) => key.startsWith(prefix)).sort()
    for (const key of keys) {
      const object = this.objects.get(key)
      if (object) yield {bytes: object.data.length, key, modifiedAt: object.modifiedAt}
    }
  }

  async put(key: string, source: Readable, options: {signal?: AbortSignal} = {}): Promise<{bytes: number}> {
    assertValidKey(key)
    const chunks: Buffer[] = []
    const collect = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(Buffer.from(chunk))
        callback()
      },
    })
    // The signal ends the write even while the source has nothing to give (the store contract).
    await pipeline(source, collect, {signal: options.signal})

    const data = Buffer.concat(chunks)
    this.objects.set(key, {data, modifiedAt: this.clock()})
    return {bytes: data.length}
  }

  putFile(key: string, path: string, options: PutFileOptions = {}): Promise<{bytes: number}> {
    return putFileAsStream(this, key, path, options)
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    const object = this.objects.get(key)
    return object ? {bytes: object.data.length, key, modifiedAt: object.modifiedAt} : undefined
  }
}
