/**
 * Language identification of translations, for the off-target rate (the share of outputs not in the target
 * language): franc-min (npm, MIT; trigram profiles of the 82 languages with 8M+ speakers, script-only for
 * Han, Japanese, Thai, Bengali and other single-language scripts). Its codes are ISO 639-3 and map onto the
 * canonical codes of src/data/languages.ts (cmn → zho, arb → ara, pes → fas, ...).
 *
 *   const lid = new LanguageDetector(["eng", "deu", "zho"]);
 *   lid.detect("Der Hund schläft.")      → "deu"
 *   lid.detect("")                        → null (undetermined)
 *   offTargetRate(lid, outputs, "deu")    → share of outputs not detected as German (null: not detectable)
 *
 * The detector chooses among `candidates` only (franc's `only`): unrestricted, franc-min reads 14% of FLORES's
 * Russian devtest as Bulgarian, Serbian or Ukrainian, and restricted to the ten AlignX languages it errs on
 * under 1% of the references of any of them. An output in a language outside the candidates is then read as the
 * nearest candidate of its script, or as undetermined when none has that script (both count as off-target unless
 * the nearest is the target). An empty output is undetermined, so off-target. Texts of any length are judged
 * (franc's default refuses texts under 10 characters, which a short Chinese sentence can be).
 * Traditional Chinese (zho_Hant) is detected as Chinese (franc-min does not tell the scripts apart).
 */
import { franc } from "franc-min";
import { data as francData } from "franc-min/data.js";
import { expressions as francExpressions } from "franc-min/expressions.js";
import { tryNormalizeLang } from "../data/languages.ts";

/** franc-min's version, for the report. */
export const LID_NAME = "franc-min 6.2.0";

/** Every language code franc-min can answer (trigram profiles, and the scripts that are one language). */
const FRANC_CODES: readonly string[] = [
  ...new Set([...Object.values(francData as Record<string, Record<string, string>>).flatMap((o) => Object.keys(o)), ...Object.keys(francExpressions).filter((k) => /^[a-z]{3}$/.test(k))]),
];

/** canonical code → its franc codes (zho_Hant shares Chinese's). */
const TO_FRANC = new Map<string, string[]>();
for (const f of FRANC_CODES) {
  const c = tryNormalizeLang(f);
  if (c === null) continue;
  TO_FRANC.set(c, [...(TO_FRANC.get(c) ?? []), f]);
}
TO_FRANC.set("zho_Hant", TO_FRANC.get("zho") ?? []);

/** The franc codes of a canonical language (empty when franc-min cannot detect it). */
export function francCodes(lang: string): readonly string[] {
  return TO_FRANC.get(lang) ?? [];
}

/** Whether franc-min can detect `lang` (a canonical code). */
export function lidSupports(lang: string): boolean {
  return francCodes(lang).length > 0;
}

export class LanguageDetector {
  /** The canonical languages it chooses among (those franc-min knows). */
  readonly candidates: readonly string[];
  /** Those it cannot detect (left out of the candidates). */
  readonly unsupported: readonly string[];
  private readonly only: string[];

  constructor(candidates: readonly string[]) {
    const uniq = [...new Set(candidates)];
    this.candidates = uniq.filter(lidSupports);
    this.unsupported = uniq.filter((l) => !lidSupports(l));
    this.only = [...new Set(this.candidates.flatMap((l) => francCodes(l)))];
    if (this.only.length === 0) throw new Error(`LanguageDetector: none of ${uniq.join(", ") || "(no languages)"} is a language franc-min detects`);
  }

  /** The canonical code of `text`'s language among the candidates, or null when undetermined. */
  detect(text: string): string | null {
    const t = text.trim();
    if (t === "") return null;
    const f = franc(t, { only: this.only, minLength: 1 });
    if (f === "und") return null;
    const c = tryNormalizeLang(f);
    return c;
  }

  /** Whether `text` is detected as `lang` (zho and zho_Hant count as one). */
  isLang(text: string, lang: string): boolean {
    const d = this.detect(text);
    return d !== null && (d === lang || (d.startsWith("zho") && lang.startsWith("zho")));
  }
}

/**
 * The share of `outputs` not detected as `target` (0..1), or null when franc-min cannot detect `target` (or
 * there are no outputs).
 */
export function offTargetRate(lid: LanguageDetector, outputs: readonly string[], target: string): number | null {
  if (!lidSupports(target) || outputs.length === 0) return null;
  let off = 0;
  for (const o of outputs) if (!lid.isLang(o, target)) off++;
  return off / outputs.length;
}
