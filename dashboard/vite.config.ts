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
  // `npm run dev`: the pages from source with hot reload, the API and the live socket
  // from a running botwatch (BOTWATCH_URL, default http://127.0.0.1:8080).
  server: {
    proxy: {
      '/api': { target: process.env.BOTWATCH_URL ?? 'http://127.0.0.1:8080', ws: true, changeOrigin: true },
    },
  },
  test: {
    environment: 'node',
    include: ['tests/**/*.test.ts'],
  },
});
