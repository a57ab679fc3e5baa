// A small YAML writer for showing resources as `gossamer get -o yaml` would: block style,
// strings quoted when YAML would read them as something else.

const PLAIN = /^[A-Za-z0-9_./:@-][A-Za-z0-9_ ./:@-]*$/;
const RESERVED = /^(true|false|yes|no|on|off|null|~|-?[0-9.]+([eE][-+]?[0-9]+)?)$/i;

function scalar(value) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  const s = String(value);
  if (s !== "" && PLAIN.test(s) && !RESERVED.test(s) && !s.endsWith(" ") && !s.includes(": ")) return s;
  return JSON.stringify(s);
}

function lines(value, indent) {
  const pad = "  ".repeat(indent);
  if (Array.isArray(value)) {
    if (!value.length) return [`${pad}[]`];
    return value.flatMap((item) => {
      const inner = lines(item, indent + 1);
      const first = inner[0].trimStart();
      return [`${pad}- ${first}`, ...inner.slice(1)];
    });
  }
  if (value && typeof value === "object") {
    const entries = Object.entries(value);
    if (!entries.length) return [`${pad}{}`];
    return entries.flatMap(([k, v]) => {
      const complex = v && typeof v === "object" && Object.keys(v).length;
      if (!complex) return [`${pad}${scalar(k)}: ${v && typeof v === "object" ? (Array.isArray(v) ? "[]" : "{}") : scalar(v)}`];
      return [`${pad}${scalar(k)}:`, ...lines(v, Array.isArray(v) ? indent : indent + 1)];
    });
  }
  return [`${pad}${scalar(value)}`];
}

export function toYaml(value) {
  return lines(value, 0).join("\n") + "\n";
}
