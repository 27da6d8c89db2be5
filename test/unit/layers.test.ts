/**
 * The layers: machines/ imports nothing from adapters/ (it owns the types adapters implement or render);
 * adapters/terminal takes only types from machines/ and store/ (it renders events, it runs nothing).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');

function imports(dir: string): { file: string; from: string; typeOnly: boolean }[] {
  const out: { file: string; from: string; typeOnly: boolean }[] = [];
  for (const name of fs.readdirSync(path.join(ROOT, dir))) {
    if (!name.endsWith('.ts')) continue;
    const file = path.join(dir, name);
    const src = ts.createSourceFile(file, fs.readFileSync(path.join(ROOT, file), 'utf8'), ts.ScriptTarget.Latest, false);
    for (const st of src.statements) {
      if ((ts.isImportDeclaration(st) || ts.isExportDeclaration(st)) && st.moduleSpecifier && ts.isStringLiteral(st.moduleSpecifier)) {
        const typeOnly = ts.isImportDeclaration(st) ? st.importClause?.isTypeOnly === true : st.isTypeOnly;
        out.push({ file, from: path.join(dir, st.moduleSpecifier.text), typeOnly });
      }
    }
  }
  return out;
}

describe('layers', () => {
  it('machines/ imports nothing from adapters/', () => {
    const all = imports('machines');
    expect(all.length).toBeGreaterThan(20);
    expect(all.filter((i) => i.from.startsWith('adapters'))).toEqual([]);
  });

  it('adapters/terminal takes only types from machines/ and store/', () => {
    const all = imports(path.join('adapters', 'terminal'));
    const outside = all.filter((i) => i.from.startsWith('machines') || i.from.startsWith('store'));
    expect(outside.length).toBeGreaterThan(0);
    expect(outside.filter((i) => !i.typeOnly)).toEqual([]);
  });
});
