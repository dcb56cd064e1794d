/**
 * The file half of agent_toolset_20260401 (read, write, edit, glob, grep), run
 * *inside* the session's sandbox as `python3 -c <this>` with one JSON request
 * on stdin and one JSON answer on stdout. Running inside means a path can only
 * ever reach what the sandbox sees; the root checks below add the toolset's
 * own rule on top (the workspace and the memory mounts only, symlinks
 * resolved, read-only stores refused for writes). The source is a constant:
 * no input is ever spliced into it.
 */
export const FS_HELPER_SOURCE = String.raw`
import json, os, re, sys, fnmatch, glob as globmod, tempfile
req = json.load(sys.stdin)
op = req["op"]; a = req["args"]
WORK = "/workspace"
ROOTS = [WORK] + req.get("roots", [])
RO = req.get("readOnlyRoots", [])
MAX_READ = req.get("maxReadBytes", 262144)
GREP_CAP = 102400
GLOB_CAP = 200
SKIP = {".git", "node_modules"}

class ToolError(Exception):
    pass

def inside(p, root):
    return p == root or p.startswith(root.rstrip("/") + "/")

def resolve(name, p):
    if "\x00" in p:
        raise ToolError(name + ": file_path must not contain NUL")
    full = os.path.realpath(os.path.join(WORK, p))
    if not any(inside(full, os.path.realpath(r)) for r in ROOTS):
        raise ToolError(name + ": " + p + " is outside the allowed directories (" + ", ".join(ROOTS) + ")")
    return full

def shown(full):
    return os.path.relpath(full, WORK) if inside(full, WORK) else full

def check_writable(name, full, p):
    for r in RO:
        if inside(full, os.path.realpath(r)):
            raise ToolError(name + ": " + p + " is inside read-only directory " + r)

def fs_err(name, e, p):
    if isinstance(e, FileNotFoundError): return ToolError(name + ": " + p + ": no such file or directory")
    if isinstance(e, IsADirectoryError): return ToolError(name + ": " + p + " is a directory")
    if isinstance(e, PermissionError): return ToolError(name + ": " + p + ": permission denied")
    return ToolError(name + ": " + p + ": " + (e.strerror or str(e)))

def do_read():
    p = a["file_path"]; full = resolve("read", p)
    try:
        st = os.stat(full)
    except OSError as e:
        raise fs_err("read", e, p)
    import stat as S
    if not S.S_ISREG(st.st_mode):
        raise ToolError("read: " + p + " is not a regular file")
    if st.st_size > MAX_READ and not a.get("view_range"):
        raise ToolError("read: " + p + " is " + str(st.st_size) + " bytes, over the " + str(MAX_READ) + " byte limit; pass view_range to read part of it")
    with open(full, "rb") as f:
        data = f.read()
    text = data.decode("utf-8", errors="replace")
    vr = a.get("view_range")
    if vr:
        start, end = vr
        if start < 1:
            raise ToolError("read: view_range start_line must be at least 1")
        lines = text.split("\n")
        sel = lines[start - 1:] if end <= 0 else lines[start - 1:end]
        text = "\n".join(sel)
        if len(text.encode()) > MAX_READ:
            raise ToolError("read: the requested range is over the " + str(MAX_READ) + " byte limit; ask for fewer lines")
    return text

def atomic_write(full, data):
    d = os.path.dirname(full)
    os.makedirs(d, exist_ok=True)
    mode = None
    try:
        mode = os.stat(full).st_mode & 0o7777
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".write-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, full)
    except BaseException:
        try: os.unlink(tmp)
        except OSError: pass
        raise

def do_write():
    p = a["file_path"]; full = resolve("write", p); check_writable("write", full, p)
    data = a["content"].encode("utf-8")
    try:
        atomic_write(full, data)
    except OSError as e:
        raise fs_err("write", e, p)
    return "wrote " + str(len(data)) + " bytes to " + p

def do_edit():
    p = a["file_path"]; full = resolve("edit", p); check_writable("edit", full, p)
    old = a["old_string"]; new = a["new_string"]
    import stat as S
    try:
        st = os.stat(full)
        if not S.S_ISREG(st.st_mode):
            raise ToolError("edit: " + p + " is not a regular file")
        if st.st_size > MAX_READ * 4:
            raise ToolError("edit: " + p + " is too large to edit here")
        with open(full, "r", encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as e:
        raise fs_err("edit", e, p)
    count = text.count(old)
    if count == 0:
        raise ToolError("edit: old_string not found in " + p)
    if count > 1 and not a.get("replace_all"):
        raise ToolError("edit: old_string appears " + str(count) + " times in " + p + " (must be unique)")
    out = text.replace(old, new) if a.get("replace_all") else text.replace(old, new, 1)
    try:
        atomic_write(full, out.encode("utf-8", errors="surrogateescape"))
    except OSError as e:
        raise ToolError("edit: write: " + p + ": " + (e.strerror or str(e)))
    return "edited " + p + " (" + str(count if a.get("replace_all") else 1) + " replacement(s))"

def do_glob():
    pat = a["pattern"]
    if pat.startswith("/"):
        raise ToolError("glob: pattern must be relative; put the directory in path")
    if ".." in pat.split("/"):
        raise ToolError('glob: ".." is not permitted in the pattern')
    base = resolve("glob", a.get("path") or ".")
    if not os.path.isdir(base):
        raise ToolError("glob: " + (a.get("path") or ".") + " is not a directory")
    hits = []
    for rel in globmod.glob(pat, root_dir=base, recursive=True):
        if any(part in SKIP for part in rel.split(os.sep)):
            continue
        full = os.path.join(base, rel)
        try:
            hits.append((os.stat(full).st_mtime, full))
        except OSError:
            pass
    if not hits:
        return "no matches"
    hits.sort(key=lambda h: -h[0])
    return "\n".join(shown(h[1]) for h in hits[:GLOB_CAP])

def do_grep():
    try:
        rx = re.compile(a["pattern"])
    except re.error as e:
        raise ToolError("grep: invalid regex: " + str(e))
    start = resolve("grep", a.get("path") or ".")
    files = []
    if os.path.isfile(start):
        files = [start]
    else:
        for d, dirs, names in os.walk(start):
            dirs[:] = sorted(x for x in dirs if x not in SKIP)
            for n in sorted(names):
                files.append(os.path.join(d, n))
    out = []; size = 0
    for fp in files:
        try:
            if os.path.islink(fp) or not os.path.isfile(fp): continue
            with open(fp, "rb") as f:
                head = f.read(8192)
                if b"\x00" in head: continue
                data = head + f.read()
        except OSError:
            continue
        for i, line in enumerate(data.decode("utf-8", errors="replace").split("\n"), 1):
            if len(line) > 2000: continue
            if rx.search(line):
                entry = shown(fp) + ":" + str(i) + ":" + line
                size += len(entry.encode()) + 1
                if size > GREP_CAP:
                    out.append("[output truncated at " + str(GREP_CAP) + " bytes]")
                    return "\n".join(out)
                out.append(entry)
    return "\n".join(out) if out else "no matches"

try:
    text = {"read": do_read, "write": do_write, "edit": do_edit, "glob": do_glob, "grep": do_grep}[op]()
    json.dump({"ok": True, "text": text}, sys.stdout)
except ToolError as e:
    json.dump({"ok": False, "text": str(e)}, sys.stdout)
except Exception as e:
    json.dump({"ok": False, "text": "Error: " + str(e)}, sys.stdout)
`;
