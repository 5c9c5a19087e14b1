// The entry point `node --test e2e/` finds: Node 20's test runner only runs files named
// like test.mjs / *.test.mjs / test-*.mjs, so dashboard.e2e.mjs is loaded from here
// (without this file the command finds no test and still exits 0).
import './dashboard.e2e.mjs';
import './webchat.e2e.mjs';
import './audience.e2e.mjs';
import './settings.e2e.mjs';
