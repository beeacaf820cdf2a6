import {isAbsolute, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

import {BackupError} from '../errors.js'
import {parseS3Location, S3Location} from './s3-location.js'

/** Where a database lives, in the forms dj-database-url accepts. */
export type DatabaseSource =
  {engine: 'mysql'; url: URL} | {engine: 'postgres'; url: URL} | {engine: 'sqlite'; path: string}

/** Where the media files live. */
export type MediaSource =
  | {
      /** What a backup does with an object that S3 serves only after a restore request (Glacier, Deep Archive). */
      archived: ArchivedObjects
      kind: 's3'
      location: S3Location
      url: URL
    }
  | {kind: 'filesystem'; path: string}

/**
 * The config's `archivedMedia`. `fail` (the default): such an object fails the backup, which names it.
 * `skip`: it is left out, named on every backup. Either way, `restore --clean` leaves archived objects.
 */
export type ArchivedObjects = 'fail' | 'skip'

/** Where backups are written. */
export type StoreLocation = {kind: 'local'; path: string} | {kind: 's3'; location: S3Location; url: URL}

/**
 * Replaces the password (and any secret-looking query value) of a URL-like string with `***`,
 * so DSNs can appear in messages, logs and --json without leaking credentials.
 */
export function redactDsn(dsn: string): string {
  return dsn
    .replace(/^([a-z][\w+.-]*:\/\/[^:/@?#]*):[^?#]*@/i, '$1:***@')
    .replaceAll(/([?&](?:password|secret|token|key|sig|signature)[^=&]*=)[^&#]*/gi, '$1***')
}

export function parseDatabaseDsn(dsn: string, root: string, where: string): DatabaseSource {
  const scheme = schemeOf(dsn)
  switch (scheme) {
    case 'mariadb':
    case 'mysql':
    case 'mysql2': {
      return {engine: 'mysql', url: parseUrl(dsn, where)}
    }

    case 'pgsql':
    case 'postgis':
    case 'postgres':
    case 'postgresql': {
      return {engine: 'postgres', url: parseUrl(dsn, where)}
    }

    case 'sqlite': {
      // dj-database-url: sqlite:///relative/path and sqlite:////absolute/path.
      const path = dsn.slice('sqlite://'.length)
      if (!path.startsWith('/') || path === '/' || path === '/:memory:') {
        throw invalid(where, dsn, 'use sqlite:///relative/path or sqlite:////absolute/path')
      }

      const rest = decodeURIComponent(path.slice(1).replace(/\?.*$/, ''))
      return {engine: 'sqlite', path: resolve(root, rest)}
    }

    default: {
      throw invalid(where, dsn, 'use postgres://…, mysql://… or sqlite:///path')
    }
  }
}

export function parseMediaDsn(
  dsn: string,
  root: string,
  where: string,
  archived: ArchivedObjects = 'fail',
): MediaSource {
  const scheme = schemeOf(dsn)
  if (scheme !== 's3') return {kind: 'filesystem', path: parsePath(dsn, root, where)}
  return {archived, kind: 's3', ...parseS3(dsn, where)}
}

export function parseStoreLocation(dsn: string, root: string, where: string): StoreLocation {
  const scheme = schemeOf(dsn)
  if (scheme === 's3') return {kind: 's3', ...parseS3(dsn, where)}
  return {kind: 'local', path: parsePath(dsn, root, where)}
}

function parseS3(dsn: string, where: string): {location: S3Location; url: URL} {
  const url = parseUrl(dsn, where)
  return {location: parseS3Location(url, where), url}
}

function parsePath(dsn: string, root: string, where: string): string {
  const scheme = schemeOf(dsn)
  if (scheme === 'file') {
    try {
      return fileURLToPath(dsn)
    } catch {
      throw invalid(where, dsn, 'use file:///absolute/path or a plain path')
    }
  }

  if (scheme !== undefined && !/^[a-z]:[\\/]/i.test(dsn)) {
    throw invalid(where, dsn, 'use a folder path, file://…, or s3://bucket/prefix')
  }

  return isAbsolute(dsn) ? dsn : resolve(root, dsn)
}

function schemeOf(dsn: string): string | undefined {
  return /^([a-z][\w+.-]*):/i.exec(dsn)?.[1]?.toLowerCase()
}

function parseUrl(dsn: string, where: string): URL {
  try {
    return new URL(dsn)
  } catch {
    throw invalid(where, dsn, 'check the URL syntax; percent-encode special characters in the password')
  }
}

function invalid(where: string, dsn: string, suggestion: string): BackupError {
  return new BackupError('CONFIG_INVALID', `${where}: ${JSON.stringify(redactDsn(dsn))} is not a valid location.`, {
    suggestion: `${suggestion[0].toUpperCase()}${suggestion.slice(1)}.`,
  })
}
