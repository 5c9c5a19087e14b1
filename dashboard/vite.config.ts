import { defineConfig } from 'vite';

// The built files go to dist/, which is committed: the botwatch binary embeds them, so
// `cargo run` needs no Node. CI rebuilds and fails when dist/ differs.
export default defineConfig({
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    target: 'es2022',
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 200,
  },
  test: {
    environment: 'node',
    include: ['tests/**/*.test.ts'],
  },
});
