import {chmod, mkdir, readFile, writeFile} from 'node:fs/promises'
import {homedir} from 'node:os'
import {dirname, join} from 'node:path'

import {AgeKeyError, generateIdentity, parseIdentityFile, parseRecipient, X25519Identity} from '../archive/age-keys.js'
import {BackupError} from '../errors.js'

export interface Recipients {
  /** The `age1…` strings, recorded in the manifest. */
  names: string[]
  /** Raw public keys for the encrypter. */
  publicKeys: Buffer[]
}

export interface KeyRingOptions {
  /** Recipients from the environment's config, if any. */
  configured?: string[]
  variables: NodeJS.ProcessEnv
}

/**
 * Where keys come from (DESIGN §4):
 * - recipients: the config, else DIVIO_BACKUP_RECIPIENTS, else the public key of the identity file;
 * - identity: DIVIO_BACKUP_IDENTITY_FILE, else ~/.config/divio/backup-identity.txt.
 * Only `create` may generate an identity, and only when nothing at all is configured.
 */
export class KeyRing {
  readonly identityPath: string
  private readonly identityPathIsExplicit: boolean

  constructor(private readonly options: KeyRingOptions) {
    const explicit = options.variables.DIVIO_BACKUP_IDENTITY_FILE
    this.identityPathIsExplicit = Boolean(explicit)
    this.identityPath = explicit || join(homedir(), '.config', 'divio', 'backup-identity.txt')
  }

  /** The secret keys, for anything that decrypts. */
  async identities(): Promise<X25519Identity[]> {
    const contents = await readFile(this.identityPath, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return
      throw new BackupError('IDENTITY_MISSING', `Cannot read the identity file ${this.identityPath}: ${error.code}.`, {
        suggestion: 'Check its permissions, or point DIVIO_BACKUP_IDENTITY_FILE at a readable copy.',
      })
    })
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
          suggestion: 'Use a file as written by age-keygen (a line starting with AGE-SECRET-KEY-1).',
        },
      )
    }
  }

  /**
   * The public keys to encrypt to. `onGenerated` is called once, with the path, when a new identity had
   * to be created because nothing was configured.
   */
  async recipients(now: Date, onGenerated?: (path: string, recipient: string) => void): Promise<Recipients> {
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

    const existing = await readFile(this.identityPath, 'utf8').catch(() => {})
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

    const {fileContents, identity} = generateIdentity()
    await mkdir(dirname(this.identityPath), {mode: 0o700, recursive: true})
    await writeFile(this.identityPath, fileContents(now), {flag: 'wx', mode: 0o600})
    await chmod(this.identityPath, 0o600)
    onGenerated?.(this.identityPath, identity.recipient)
    return {names: [identity.recipient], publicKeys: [identity.publicKey]}
  }
}

function splitList(text: string | undefined): string[] {
  return (text ?? '').split(/[\s,]+/).filter((item) => item !== '')
}
