import {chmod, lstat, readFile, readlink, stat, writeFile} from 'node:fs/promises'
import {homedir} from 'node:os'
import {dirname, join} from 'node:path'

import {AgeKeyError, generateIdentity, parseIdentityFile, parseRecipient, X25519Identity} from '../archive/age-keys.js'
import {generateWriterKey, isWriterId, parseWriterKey, WriterKey} from '../archive/writer-key.js'
import {BackupError} from '../errors.js'
import {makeFolders} from '../lib/folders.js'

export interface Recipients {
  /** The `age1…` strings, recorded in the manifest. */
  names: string[]
  /** Raw public keys for the encrypter. */
  publicKeys: Buffer[]
}

export interface KeyRingOptions {
  /** Recipients from the environment's config, if any. */
  configured?: string[]
  /** Trusted writer ids from the environment's config, if any. */
  configuredWriters?: string[]
  variables: NodeJS.ProcessEnv
  /** Where warnings go (a key file that others can read). */
  warn?: (message: string) => void
}

/**
 * Where keys come from (docs/keys.md):
 * - recipients: the config, else DIVIO_BACKUP_RECIPIENTS, else the public key of the identity file;
 * - identity: DIVIO_BACKUP_IDENTITY_FILE, else ~/.config/divio/backup-identity.txt;
 * - writer key: DIVIO_BACKUP_WRITER_KEY (the key itself, for containers), else the file
 *   DIVIO_BACKUP_WRITER_KEY_FILE, else ~/.config/divio/backup-writer-key.txt;
 * - trusted writers: the config's encryption.writers, else DIVIO_BACKUP_WRITERS, else this machine's
 *   own writer id.
 * Only `create` may generate an identity or a writer key, and only when none is configured.
 */
export class KeyRing {
  readonly identityPath: string
  readonly writerKeyPath: string
  private readonly identityPathIsExplicit: boolean
  private readonly writerKeyPathIsExplicit: boolean

  constructor(private readonly options: KeyRingOptions) {
    const explicit = options.variables.DIVIO_BACKUP_IDENTITY_FILE
    this.identityPathIsExplicit = Boolean(explicit)
    this.identityPath = explicit || join(homedir(), '.config', 'divio', 'backup-identity.txt')
    const writerFile = options.variables.DIVIO_BACKUP_WRITER_KEY_FILE
    this.writerKeyPathIsExplicit = Boolean(writerFile)
    this.writerKeyPath = writerFile || join(homedir(), '.config', 'divio', 'backup-writer-key.txt')
  }

  /** This machine's writer key if it has one; never generates one. */
  async existingWriterKey(): Promise<undefined | WriterKey> {
    const inline = this.options.variables.DIVIO_BACKUP_WRITER_KEY
    const source = inline ? 'DIVIO_BACKUP_WRITER_KEY' : this.writerKeyPath
    const contents =
      inline || (await this.readKeyFile(this.writerKeyPath, 'writer key', 'DIVIO_BACKUP_WRITER_KEY_FILE'))
    if (contents === undefined) return undefined
    try {
      return parseWriterKey(contents)
    } catch (error) {
      // Never echo the value: it is a secret.
      throw new BackupError(
        'IDENTITY_WRONG',
        `${source} does not hold a writer key: ${(error as AgeKeyError).message}.`,
        {
          suggestion:
            'Use the file the first `create` wrote (a line starting with DIVIO-WRITER-KEY-1), or its contents.',
        },
      )
    }
  }

  /** The secret keys, for anything that decrypts. */
  async identities(): Promise<X25519Identity[]> {
    const contents = await this.readKeyFile(this.identityPath, 'identity file', 'DIVIO_BACKUP_IDENTITY_FILE')
    if (contents === undefined) {
      throw new BackupError(
        'IDENTITY_MISSING',
        `No identity file at ${this.identityPath}: the secret key is needed to decrypt.`,
        {
          suggestion:
            'Set DIVIO_BACKUP_IDENTITY_FILE to the file holding the AGE-SECRET-KEY-1… line these backups were encrypted to.',
        },
      )
    }

    try {
      return parseIdentityFile(contents)
    } catch (error) {
      throw new BackupError(
        'IDENTITY_WRONG',
        `${this.identityPath} is not an age identity file: ${(error as AgeKeyError).message}.`,
        {
          suggestion:
            (error as AgeKeyError).suggestion ??
            'Use a file as written by age-keygen (a line starting with AGE-SECRET-KEY-1).',
        },
      )
    }
  }

  /**
   * The public keys to encrypt to. `onGenerated` is called once, with the path, when a new identity had
   * to be created because nothing was configured and no identity file exists.
   */
  async recipients(
    now: Date,
    onGenerated?: (path: string, recipient: string) => void,
    /** Called before a new identity is generated; it throws to refuse (create: the store holds backups). */
    beforeGenerating?: () => Promise<void>,
  ): Promise<Recipients> {
    const configured = this.options.configured ?? splitList(this.options.variables.DIVIO_BACKUP_RECIPIENTS)
    if (configured.length > 0) {
      try {
        return {names: configured, publicKeys: configured.map((recipient) => parseRecipient(recipient))}
      } catch (error) {
        throw new BackupError('RECIPIENTS_INVALID', `Invalid encryption recipient: ${(error as Error).message}.`, {
          suggestion: 'Recipients are age X25519 public keys starting with age1 (see `age-keygen -y`).',
        })
      }
    }

    const existing = await this.readKeyFile(this.identityPath, 'identity file', 'DIVIO_BACKUP_IDENTITY_FILE')
    if (existing !== undefined) {
      const identities = await this.identities()
      return {
        names: identities.map((identity) => identity.recipient),
        publicKeys: identities.map((identity) => identity.publicKey),
      }
    }

    if (this.identityPathIsExplicit) {
      // Generating a key where the user pointed at an existing one would silently fork the key history.
      throw new BackupError(
        'IDENTITY_MISSING',
        `DIVIO_BACKUP_IDENTITY_FILE points at ${this.identityPath}, which does not exist.`,
        {
          suggestion: 'Restore that file, fix the variable, or unset it to use (or create) the default identity.',
        },
      )
    }

    await beforeGenerating?.()
    const {fileContents, identity} = generateIdentity()
    await makeFolders(dirname(this.identityPath), 0o700)
    await writeFile(this.identityPath, fileContents(now), {flag: 'wx', mode: 0o600})
    await chmod(this.identityPath, 0o600)
    onGenerated?.(this.identityPath, identity.recipient)
    return {names: [identity.recipient], publicKeys: [identity.publicKey]}
  }

  /**
   * The writers whose backups are authentic here. Invalid entries are an error rather than ignored:
   * a typo would otherwise silently distrust every backup.
   */
  async trustedWriters(): Promise<Set<string>> {
    const configured = this.options.configuredWriters ?? splitList(this.options.variables.DIVIO_BACKUP_WRITERS)
    if (configured.length > 0) {
      const invalid = configured.find((writer) => !isWriterId(writer))
      if (invalid !== undefined) {
        throw new BackupError('RECIPIENTS_INVALID', `Invalid trusted writer id: ${JSON.stringify(invalid)}.`, {
          suggestion:
            'Writer ids start with divio-writer1; `divio app backup info` shows the writer of a backup, and the first lines of a writer key file show its id.',
        })
      }

      return new Set(configured)
    }

    const own = await this.existingWriterKey()
    return new Set(own ? [own.id] : [])
  }

  /**
   * This machine's writer key, which signs what it writes. Generated (and `onGenerated` called with its
   * path and id) when none is configured and the default file does not exist.
   */
  async writerKey(now: Date, onGenerated?: (path: string, writerId: string) => void): Promise<WriterKey> {
    const existing = await this.existingWriterKey()
    if (existing) return existing
    if (this.writerKeyPathIsExplicit) {
      throw new BackupError(
        'IDENTITY_MISSING',
        `DIVIO_BACKUP_WRITER_KEY_FILE points at ${this.writerKeyPath}, which does not exist.`,
        {suggestion: 'Restore that file, fix the variable, or unset it to use (or create) the default writer key.'},
      )
    }

    const {fileContents, key} = generateWriterKey()
    await makeFolders(dirname(this.writerKeyPath), 0o700)
    await writeFile(this.writerKeyPath, fileContents(now), {flag: 'wx', mode: 0o600})
    await chmod(this.writerKeyPath, 0o600)
    onGenerated?.(this.writerKeyPath, key.id)
    return key
  }

  /**
   * A key file's contents, or undefined when there is none. A link to nothing is an error, not an
   * absent key: generating one there would fail, and a key may be on a volume that is not mounted. A
   * file that others can read is used, with a warning (see docs/keys.md).
   */
  private async readKeyFile(path: string, what: string, variable: string): Promise<string | undefined> {
    const unreadable = (error: NodeJS.ErrnoException) =>
      new BackupError('IDENTITY_MISSING', `Cannot read the ${what} ${path}: ${error.code}.`, {
        suggestion: `Check its permissions, or point ${variable} at a readable copy.`,
      })
    const link = await lstat(path).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return
      throw unreadable(error)
    })
    if (link === undefined) return undefined
    const info = await stat(path).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw unreadable(error)
    })
    if (info === undefined) {
      const target = await readlink(path).catch(() => '?')
      throw new BackupError(
        'IDENTITY_MISSING',
        `The ${what} ${path} is a symbolic link to ${target}, which does not exist.`,
        {
          suggestion: `Mount or restore ${target}, or point ${variable} at the ${what}. Nothing is generated in its place.`,
        },
      )
    }

    const contents = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
      throw unreadable(error)
    })
    const permissions = info.mode % 0o1000
    // Any bit for the group or others: 0o077 is everything below the owner's three.
    if (permissions % 0o100 !== 0 && !warned.has(path)) {
      warned.add(path)
      this.options.warn?.(
        `warning: the ${what} ${path} can be read by others (mode ${permissions.toString(8).padStart(4, '0')}). Try this: chmod 600 ${path}`,
      )
    }

    return contents
  }
}

/** Each key file is warned about once a process, however often it is read. */
const warned = new Set<string>()

function splitList(text: string | undefined): string[] {
  return (text ?? '').split(/[\s,]+/).filter((item) => item !== '')
}

/** Said once, loudly, when a new identity was generated: losing that file loses the backups. */
export function identityCreatedNotice(path: string, recipient: string): string {
  return [
    '',
    '!!! A new encryption key was created for your backups.',
    '!!! Secret key (mode 0600):',
    `!!!   ${path}`,
    `!!! Public key: ${recipient}`,
    '!!! Without this file the backups cannot be decrypted. Copy it somewhere safe now,',
    '!!! away from this machine, for example into a password manager.',
    '',
  ].join('\n')
}

/** Said once when a new writer key was generated, with the id that machines which restore must trust. */
export function writerKeyCreatedNotice(path: string, writerId: string): string {
  return [
    '!!! A new writer key was created: it signs the backups this machine makes.',
    '!!! Writer key (mode 0600):',
    `!!!   ${path}`,
    `!!! Writer id: ${writerId}`,
    '!!! Machines that verify or restore trust this id (encryption.writers, or DIVIO_BACKUP_WRITERS).',
    '',
  ].join('\n')
}
