// @ts-check
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';
import { readFileSync } from 'node:fs';

/**
 * The import rules of the architecture guide, from import-rules.json (test/architecture.test.ts
 * reads the same table, resolving paths exactly; this is the quick feedback in the editor).
 * Patterns are generated per depth below src/<folder>/ so that `../x/` means src/x/ exactly.
 */
const importRules = JSON.parse(readFileSync(new URL('./import-rules.json', import.meta.url), 'utf8'));
const folders = Object.keys(importRules.folders);
const topLevelModules = Object.keys(importRules.topLevel).filter((name) => name !== 'errors.ts');

const layerRules = folders.flatMap((folder) => {
  const allowed = importRules.folders[folder];
  const mayImport = (other) => other !== 'cli' && (allowed.includes('*') || allowed.includes(other));
  const forbidden = [...folders.filter((other) => other !== folder && !mayImport(other)), ...topLevelModules];
  const message = `src/${folder} may import only: ${allowed.join(', ') || 'nothing else in src/'}`;
  return [1, 2, 3, 4].map((depth) => {
    const up = '../'.repeat(depth);
    return {
      files: [`src/${folder}/${'*/'.repeat(depth - 1)}*.ts`],
      rules: {
        'no-restricted-imports': [
          'error',
          {
            patterns: forbidden.map((name) => ({
              group: name.endsWith('.ts') ? [`${up}${name.replace(/\.ts$/, '.js')}`] : [`${up}${name}/*`],
              message,
            })),
          },
        ],
      },
    };
  });
});

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
    // CommonJS (bin/package.json): Node starts a CommonJS entry faster than an ES module.
    files: ['bin/**/*.js'],
    languageOptions: { sourceType: 'commonjs', globals: globals.node },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
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
