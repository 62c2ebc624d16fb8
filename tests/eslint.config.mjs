// The JS lint of the repository (`scripts/test` runs it from the root with this config):
// ESLint's recommended rules over the npm package, its tests and the end-to-end tests.
// The dashboard's TypeScript is checked by `tsc` in scripts/build-web.
import js from '@eslint/js';
import globals from 'globals';

export default [
  { ignores: ['**/node_modules/**', '**/dist/**', 'npm/lib/**', 'tests/artifacts/**', 'web/**', 'target/**'] },
  js.configs.recommended,
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: {
      ecmaVersion: 2024,
      sourceType: 'module',
      globals: { ...globals.node, ...globals.browser, ...globals.worker, Deno: 'readonly' },
    },
    rules: {
      'no-unused-vars': ['error', { argsIgnorePattern: '^_', caughtErrors: 'none' }],
      eqeqeq: ['error', 'smart'],
      'prefer-const': 'error',
      'no-var': 'error',
    },
  },
];
