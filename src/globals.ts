// Side-effect entry: `import "alignx/globals"` (or bunfig.toml `preload = ["./src/globals.ts"]`, or
// `bun --preload ./src/globals.ts script.ts`) gives a script navigator.gpu and the GPU* globals.
import { installGlobals } from "./gpu/globals.ts";

await installGlobals();
