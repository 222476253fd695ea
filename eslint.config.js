// @ts-check
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

/**
 * The import rules of ARCHITECTURE.md: each src/ folder may import only the folders listed.
 * test/architecture.test.ts checks the same table so a violation fails `npm test` too.
 */
const layers = {
  oci: [],
  parser: [],
  snapshot: ['oci'],
  executor: ['parser', 'snapshot', 'oci', 'oci-writer', 'push'],
  'oci-writer': ['oci'],
  push: ['oci'],
  analyze: ['oci', 'snapshot'],
};
const allFolders = ['oci', 'parser', 'snapshot', 'executor', 'oci-writer', 'push', 'cli'];

const layerRules = Object.entries(layers).map(([folder, allowed]) => ({
  files: [`src/${folder}/**/*.ts`],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: allFolders
          .filter((other) => other !== folder && !allowed.includes(other))
          .map((other) => ({
            group: [`../${other}/*`, `../../${other}/*`, `../index.js`, `../../index.js`],
            message: `src/${folder} may import only: ${allowed.join(', ') || 'nothing else in src/'}`,
          })),
      },
    ],
  },
}));

export default tseslint.config(
  { ignores: ['dist/**', 'dist-check/**', 'node_modules/**', 'coverage/**', 'bench/out/**'] },
  eslint.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/restrict-template-expressions': [
        'error',
        { allowNumber: true, allowBoolean: true },
      ],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unnecessary-condition': ['error', { allowConstantLoopConditions: true }],
    },
  },
  {
    files: ['**/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { globals: globals.node },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
    },
  },
  ...layerRules,
);
