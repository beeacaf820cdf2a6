import oclif from 'eslint-config-oclif'
import prettier from 'eslint-config-prettier'

export default [
  {ignores: ['dist/', 'node_modules/', 'coverage/', 'oclif.manifest.json']},
  ...oclif,
  prettier,
  {
    // TypeScript checks names itself, and knows ambient types such as BufferEncoding that no-undef does not.
    // Backups stream objects one after another on purpose (bounded memory, ordered commits): awaits in loops are the point.
    // import/namespace re-parses every imported module, node_modules included, to check what TypeScript checks already.
    files: ['**/*.ts'],
    rules: {'import/namespace': 'off', 'no-await-in-loop': 'off', 'no-undef': 'off'},
  },
  {
    files: ['src/**/*.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          message:
            'Remove a tree with removeTree (src/lib/remove-tree.ts): a recursive fs.rm starts an unlink for every name at once, so its memory grows with the tree, and rmSync blocks the thread.',
          selector: "CallExpression[callee.name=/^rm(Sync)?$/] ObjectExpression > Property[key.name='recursive']",
        },
        {
          message:
            "Write a stream's data to a file with createFileSink (src/lib/file-sink.ts): fs.createWriteStream waits for each 16 KiB it is given to be written, and never gives lent buffers back.",
          selector: "CallExpression[callee.name='createWriteStream']",
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts', 'scripts/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-expressions': 'off',
      'mocha/max-top-level-suites': 'off',
      'mocha/no-skipped-tests': 'off',
      'no-bitwise': 'off',
      // Tests write configs that contain ${VAR} on purpose.
      'no-template-curly-in-string': 'off',
      'no-unused-expressions': 'off',
      'prefer-arrow-callback': 'off',
      // Small helpers next to the assertions that use them read better than hoisted ones.
      'unicorn/consistent-function-scoping': 'off',
    },
  },
  {
    // Mocha loads reporters with require(), so the reporter is CommonJS.
    files: ['**/*.cjs'],
    languageOptions: {globals: {module: 'writable', process: 'readonly', require: 'readonly'}},
    rules: {'@typescript-eslint/no-require-imports': 'off'},
  },
]
