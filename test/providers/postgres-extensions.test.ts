import {expect} from 'chai'

import {restoreListWithout} from '../../src/providers/database/postgres-extensions.js'

/** `pg_restore --list` of a dump by pg_dump 15, with lines that only look like an extension's. */
const LIST = `;
; Archive created at 2026-12-06 12:10:56 UTC
;     dbname: live
;     Format: CUSTOM
;
; Selected TOC Entries:
;
9; 2615 16477 SCHEMA - odd schema backup_admin
4; 3079 16478 EXTENSION - citext 
3505; 0 0 COMMENT - EXTENSION citext 
2; 3079 16385 EXTENSION - pg_trgm 
3506; 0 0 COMMENT - EXTENSION pg_trgm 
3; 3079 16466 EXTENSION - uuid-ossp 
3507; 0 0 COMMENT - EXTENSION "uuid-ossp" 
219; 1259 16591 TABLE public EXTENSION - pg_trgm backup_admin
218; 1259 16583 TABLE public t backup_admin
3508; 0 0 COMMENT public TABLE t backup_admin
3498; 0 16591 TABLE DATA public EXTENSION - pg_trgm backup_admin
3497; 0 16583 TABLE DATA public t backup_admin
3353; 2606 16589 CONSTRAINT public t t_pkey backup_admin
3354; 1259 16590 INDEX public t_trgm backup_admin
`

const without = (...names: string[]) => LIST.split('\n').filter((line) => !names.some((name) => line.startsWith(name)))

describe('the entries a PostgreSQL restore leaves out: extensions another role owns in the target', () => {
  it('leaves out each kept extension and the comment on it, quoted or not, and nothing else', () => {
    expect(restoreListWithout(LIST, new Set(['pg_trgm'])).split('\n')).to.deep.equal(without('2;', '3506;'))
    expect(restoreListWithout(LIST, new Set(['citext', 'uuid-ossp'])).split('\n')).to.deep.equal(
      without('4;', '3505;', '3;', '3507;'),
    )
  })

  it('keeps the list as it is when the target keeps none of its extensions', () => {
    expect(restoreListWithout(LIST, new Set(['-', 'EXTENSION', 'postgis', 'public']))).to.equal(LIST)
  })
})
