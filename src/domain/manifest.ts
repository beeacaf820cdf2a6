import {z} from 'zod'

/**
 * manifest.json: a backup's metadata, written last. Its presence is what makes a backup exist.
 * Plaintext on purpose, so that list, info and retention need no secret key; it holds no file names
 * and no data, only sizes, checksums and public keys.
 */

/** 2: signed by a writer key (docs/keys.md). 1: unsigned, written before signing; still read. */
export const MANIFEST_SCHEMA_VERSION = 2
export const MANIFEST_NAME = 'manifest.json'
export const PIN_NAME = 'pin'

const sha256 = z.string().regex(/^[0-9a-f]{64}$/)

export const storedObjectSchema = z.object({
  bytes: z.number().int().nonnegative(),
  name: z.string().regex(/^[\w.-]+$/),
  sha256,
})

export const contentSchema = z.object({
  bytes: z.number().int().nonnegative(),
  sha256,
})

/**
 * What the database held when it was dumped, taken in the dump's own snapshot: the rows of every
 * table and a hash of the normalised schema. A drill compares a restored copy with it. `approximate`
 * where the counts could not share the dump's snapshot (docs/monitoring.md says when).
 */
export const databaseFactsSchema = z.object({
  counted: z.enum(['approximate', 'exact']),
  rows: z.number().int().nonnegative(),
  schemaSha256: sha256,
  tables: z.record(z.string(), z.number().int().nonnegative()),
})
export type DatabaseFacts = z.infer<typeof databaseFactsSchema>

export const databaseComponentSchema = z.object({
  compression: z.enum(['none', 'zstd']),
  engine: z.enum(['mysql', 'postgres', 'sqlite']),
  facts: databaseFactsSchema.optional(),
  /** sqlite3: an SQLite database file; custom: pg_dump -Fc; sql: a SQL script. */
  format: z.enum(['custom', 'sql', 'sqlite3']),
  object: storedObjectSchema,
  plaintext: contentSchema,
  serverVersion: z.string().optional(),
})

export const mediaTarComponentSchema = z.object({
  compression: z.enum(['none', 'zstd']),
  files: z.number().int().nonnegative(),
  /** The per-file listing (the tar's MANIFEST.json), also stored on its own, encrypted: file names are data. */
  listing: z.object({object: storedObjectSchema, plaintext: contentSchema}),
  object: storedObjectSchema,
  plaintext: contentSchema,
  source: z.enum(['filesystem', 's3']),
  /** Sum of the sizes of the files, as opposed to the size of the tar. */
  totalFileBytes: z.number().int().nonnegative(),
})

/**
 * Incremental media (docs/storage.md): file contents live once in packs shared by backups; the backup's own
 * object is its index (media.index.gz.age), which lists every file with its blobs. The index's SHA-256
 * is here, and every blob's is in the index, so the signature covers every byte.
 */
/** A pack as a manifest records it: its stored size and SHA-256, and `zstd` when its tar is compressed. */
export const packObjectSchema = storedObjectSchema.extend({compression: z.literal('zstd').optional()})
export type PackObject = z.infer<typeof packObjectSchema>

export const mediaPacksComponentSchema = z.object({
  files: z.number().int().nonnegative(),
  format: z.literal('packs'),
  /** `gzip`: the index is gzipped JSON lines; absent (older backups): plain JSON lines. */
  index: z.object({encoding: z.literal('gzip').optional(), object: storedObjectSchema, plaintext: contentSchema}),
  /**
   * The same packs with the size and SHA-256 of each as stored, so that the signature covers them:
   * a pack planted or swapped in the store is told apart before it is opened (`export --raw`, and the
   * recipe of its README). Absent in backups written before it was recorded. `compression: zstd`
   * marks a pack whose tar is compressed (absent: stored as it is; readers also tell by its first bytes).
   */
  packObjects: z.array(packObjectSchema).optional(),
  /** Every pack the index refers to: what prune must keep, readable without a key. Random names only. */
  packs: z.array(z.string().regex(/^[\da-f]{32}\.age$/)),
  /**
   * The index as an sh script that rebuilds the tree from extracted packs (export --raw). `zstd`: it is
   * compressed (absent in backups before it was, or written where zstd was not).
   */
  rebuild: z.object({
    compression: z.literal('zstd').optional(),
    object: storedObjectSchema,
    plaintext: contentSchema,
  }),
  source: z.enum(['filesystem', 's3']),
  /** What this backup added: bytes of new blobs, and files whose content was read. */
  stored: z.object({blobBytes: z.number().int().nonnegative(), filesRead: z.number().int().nonnegative()}),
  totalFileBytes: z.number().int().nonnegative(),
})

export const mediaComponentSchema = z.union([mediaPacksComponentSchema, mediaTarComponentSchema])

export const triggerSchema = z.enum(['on-demand', 'scheduled'])

/** Who wrote the backup: an Ed25519 signature over every other field (see canonicalManifestBytes). */
export const signatureSchema = z.object({
  algorithm: z.literal('ed25519'),
  /** The writer's age recipient, for what later creates of this writer must read back. */
  recipient: z.string(),
  /** Base64 of the 64-byte signature. */
  value: z.string(),
  /** `divio-writer1…`: the writer's public key. */
  writer: z.string(),
})

export const manifestSchema = z.object({
  app: z.string(),
  completedAt: z.string().datetime(),
  components: z.object({
    database: databaseComponentSchema.optional(),
    media: mediaComponentSchema.optional(),
  }),
  createdAt: z.string().datetime(),
  encryption: z.object({
    format: z.literal('age-v1'),
    recipients: z.array(z.string()).min(1),
  }),
  environment: z.string(),
  id: z.string(),
  note: z.string().nullable(),
  schemaVersion: z.union([z.literal(1), z.literal(MANIFEST_SCHEMA_VERSION)]),
  signature: signatureSchema.optional(),
  tool: z.object({name: z.string(), version: z.string()}),
  trigger: triggerSchema,
})

export type Manifest = z.infer<typeof manifestSchema>
export type DatabaseComponent = z.infer<typeof databaseComponentSchema>
export type MediaComponent = z.infer<typeof mediaComponentSchema>
export type MediaTarComponent = z.infer<typeof mediaTarComponentSchema>
export type MediaPacksComponent = z.infer<typeof mediaPacksComponentSchema>

export function isPacked(media: MediaComponent): media is MediaPacksComponent {
  return 'format' in media && media.format === 'packs'
}

export type StoredObject = z.infer<typeof storedObjectSchema>
export type Trigger = z.infer<typeof triggerSchema>
export type ManifestSignature = z.infer<typeof signatureSchema>

export type ParseManifestResult = {error: string; ok: false} | {manifest: Manifest; ok: true}

export function parseManifest(text: string): ParseManifestResult {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (error) {
    return {error: `not JSON: ${(error as Error).message}`, ok: false}
  }

  const parsed = manifestSchema.safeParse(raw)
  if (!parsed.success) {
    const [issue] = parsed.error.issues
    return {error: `${issue.path.join('.') || '(top level)'}: ${issue.message}`, ok: false}
  }

  return {manifest: parsed.data, ok: true}
}

/** Every stored object a manifest refers to, in the order they were written. */
export function objectsOf(manifest: Manifest): StoredObject[] {
  const {database, media} = manifest.components
  const mediaObjects = media
    ? isPacked(media)
      ? [media.index.object, media.rebuild.object]
      : [media.object, media.listing.object]
    : []
  return [...(database ? [database.object] : []), ...mediaObjects]
}

/**
 * The bytes a writer signs: a fixed context line, then the manifest without `signature` as JSON with
 * keys sorted at every level and no whitespace. Parsing and re-serializing cannot change them, so the
 * signature survives pretty-printing, and any edit of any field breaks it.
 */
export function canonicalManifestBytes(
  manifest: Record<string, unknown>,
  signer: Omit<ManifestSignature, 'value'>,
): Buffer {
  const fields = {...manifest}
  delete fields.signature
  return Buffer.from(`divio-backup manifest signature v1\n${canonicalJson({...fields, signer})}`, 'utf8')
}

/** JSON with keys sorted at every level and no whitespace: the same bytes however it was formatted. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item)).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`
  }

  return JSON.stringify(value)
}
