/** Whose client tools read the file: MariaDB's and MySQL's name their TLS options differently. */
export type ClientFamily = 'mariadb' | 'mysql'

/**
 * The client options file for a `mysql://` DSN: the only place the password is written (the file is
 * 0600, and removed after the command). Its TLS settings follow the DSN's `ssl-mode` (or `ssl_mode`),
 * and `ssl-ca`, `ssl-cert` and `ssl-key`, in the words of the family of tools that reads it.
 *
 * Why per family: MySQL's tools take `ssl-mode`, and MariaDB's (which Debian installs as `mysql` and
 * `mysqldump` too) know no such option and refuse the whole file ("unknown variable
 * 'ssl-mode=REQUIRED'"): every command on such a DSN failed. MariaDB's client has no mode that
 * requires TLS without checking the server's certificate, so REQUIRED is taken as VERIFY_CA there:
 * a connection is refused rather than made in the clear, and `ssl-ca` names the certificate authority
 * of a server whose certificate is not signed by one the system trusts.
 */
export function clientOptions(url: URL, family: ClientFamily): string {
  const lines = [
    '[client]',
    `host=${quote(url.hostname || 'localhost')}`,
    ...(url.port ? [`port=${url.port}`] : []),
    ...(url.username ? [`user=${quote(decodeURIComponent(url.username))}`] : []),
    ...(url.password ? [`password=${quote(decodeURIComponent(url.password))}`] : []),
  ]
  // A Unix socket (a drill's scratch server listens on nothing else).
  const socket = url.searchParams.get('socket')
  if (socket) lines.push(`socket=${quote(socket)}`)
  for (const file of ['ssl-ca', 'ssl-cert', 'ssl-key']) {
    const path = url.searchParams.get(file) ?? url.searchParams.get(file.replace('-', '_'))
    if (path) lines.push(`${file}=${quote(path)}`)
  }

  const mode = (url.searchParams.get('ssl-mode') ?? url.searchParams.get('ssl_mode'))?.toUpperCase()
  if (mode) lines.push(...(family === 'mysql' ? [`ssl-mode=${mode}`] : mariadbTls(mode)))
  return `${lines.join('\n')}\n`
}

function mariadbTls(mode: string): string[] {
  switch (mode) {
    case 'DISABLED': {
      return ['skip-ssl']
    }

    case 'PREFERRED': {
      return ['ssl']
    }

    default: {
      // REQUIRED, VERIFY_CA, VERIFY_IDENTITY: the server's certificate is checked, its name included.
      return ['ssl', 'ssl-verify-server-cert']
    }
  }
}

/** A value for a MySQL option file: double-quoted, with backslashes and quotes escaped. */
function quote(value: string): string {
  return `"${value.replaceAll('\\', '\\\\').replaceAll('"', String.raw`\"`)}"`
}
