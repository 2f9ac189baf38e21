#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Read the series manifest and turn it into git commits on top of a base.

Used by scripts/asi; not meant to be run by hand, but it can be:

  asi_series.py check    REPO
  asi_series.py assemble REPO GIT_DIR BASE_COMMIT   -> prints the tip commit
  asi_series.py cover    REPO                       -> prints the cover letter
  asi_series.py export   REPO GIT_DIR BASE TIP      -> writes BASE..TIP back into REPO
"""

import os
import subprocess
import sys
import tempfile

MANIFEST = "patches/series.manifest"
# Top-level directories of the repository that hold overlay files.
OVERLAY_ROOTS = ("arch", "Documentation", "include", "mm", "rust", "tools")
# A fixed date keeps the commit hashes of an unchanged series stable.
COMMIT_DATE = "2026-01-01T00:00:00+0000"


class SeriesError(Exception):
    pass


class Entry:
    def __init__(self, subject, line):
        self.subject = subject
        self.line = line
        self.files = []
        self.body = []

    def message(self, signoff):
        body = "\n".join(self.body).strip("\n")
        return f"{self.subject}\n\n{body}\n\nSigned-off-by: {signoff}\n"


class Manifest:
    def __init__(self, repo):
        self.repo = repo
        self.header = {}
        self.cover = []
        self.entries = []
        self._parse(os.path.join(repo, MANIFEST))

    def _parse(self, path):
        try:
            lines = open(path, encoding="utf-8").read().split("\n")
        except OSError as e:
            raise SeriesError(f"cannot read {MANIFEST}: {e.strerror}")
        entry = None
        in_files = False
        in_cover = False
        for n, raw in enumerate(lines, 1):
            if raw.startswith("==="):
                subject = raw[3:].strip()
                if not subject:
                    raise SeriesError(f"{MANIFEST}:{n}: entry without a subject")
                entry = Entry(subject, n)
                self.entries.append(entry)
                in_files = False
                continue
            if entry is None:
                if in_cover:
                    self.cover.append(raw)
                elif raw.startswith("#") or not raw.strip():
                    continue
                elif ":" in raw:
                    key, value = raw.split(":", 1)
                    self.header[key.strip()] = value.strip()
                    in_cover = key.strip() == "Cover-Subject"
                else:
                    raise SeriesError(f"{MANIFEST}:{n}: expected 'Key: value'")
                continue
            if raw.strip() == "Files:" and not entry.files and not entry.body:
                in_files = True
                continue
            if in_files:
                if raw[:1] in (" ", "\t") and raw.strip():
                    entry.files.append(raw.strip())
                    continue
                in_files = False
            entry.body.append(raw)
        if not self.entries:
            raise SeriesError(f"{MANIFEST}: no entries")
        if "From" not in self.header:
            raise SeriesError(f"{MANIFEST}: no 'From:' header")

    def patched_files(self):
        """For each patch listed, the files it changes."""
        touched = {}
        for e in self.entries:
            for f in e.files:
                if f.startswith("patches/"):
                    touched[f] = patch_targets(os.path.join(self.repo, f))
        return touched

    def check(self):
        """Every listed file exists, and every overlay file is listed once."""
        seen = {}
        for e in self.entries:
            if not e.files:
                raise SeriesError(f"{MANIFEST}:{e.line}: '{e.subject}' holds no files")
            if not "".join(e.body).strip():
                raise SeriesError(f"{MANIFEST}:{e.line}: '{e.subject}' has no changelog")
            for f in e.files:
                if not os.path.isfile(os.path.join(self.repo, f)):
                    raise SeriesError(f"{MANIFEST}:{e.line}: '{f}' does not exist")
                if f in seen:
                    raise SeriesError(f"{MANIFEST}: '{f}' is in two entries")
                seen[f] = e
        missing = [f for f in overlay_files(self.repo) if f not in seen]
        if missing:
            raise SeriesError(
                f"{MANIFEST}: overlay files in no entry: " + ", ".join(missing))


def patch_targets(path):
    """The files a unified diff changes."""
    targets = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("+++ ") and not line.startswith("+++ /dev/null"):
                name = line[4:].split("\t", 1)[0].strip()
                targets.append(name[2:] if name.startswith("b/") else name)
    return targets


def overlay_files(repo):
    """The files of the overlay that git knows about (tracked or new, not ignored)."""
    out = subprocess.run(
        ["git", "-C", repo, "ls-files", "--cached", "--others", "--exclude-standard",
         "--", *OVERLAY_ROOTS],
        check=True, capture_output=True, text=True).stdout
    return sorted(f for f in out.split("\n") if f and os.path.isfile(os.path.join(repo, f)))


def git(git_dir, *args, env=None, input=None):
    full_env = dict(os.environ, GIT_DIR=git_dir)
    if env:
        full_env.update(env)
    p = subprocess.run(["git", *args], env=full_env, input=input,
                       capture_output=True, text=True)
    if p.returncode:
        raise SeriesError(f"git {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout.strip()


def patch_failure(patch, stderr):
    """Name the patch and the file it failed on, from git apply's messages."""
    failed = []
    for line in stderr.splitlines():
        for marker in ("error: patch failed: ", "error: "):
            if line.startswith(marker):
                rest = line[len(marker):]
                name = rest.split(":", 1)[0].strip()
                if "/" in name or "." in name:
                    failed.append(name)
                break
    where = failed[0] if failed else "unknown file"
    return f"patch {patch} does not apply: it fails on {where}\n{stderr.strip()}"


def assemble(repo, git_dir, base):
    m = Manifest(repo)
    m.check()
    ident = m.header["From"]
    name, _, email = ident.partition("<")
    env = {
        "GIT_AUTHOR_NAME": name.strip(), "GIT_AUTHOR_EMAIL": email.rstrip(">").strip(),
        "GIT_COMMITTER_NAME": name.strip(), "GIT_COMMITTER_EMAIL": email.rstrip(">").strip(),
        "GIT_AUTHOR_DATE": COMMIT_DATE, "GIT_COMMITTER_DATE": COMMIT_DATE,
    }
    parent = git(git_dir, "rev-parse", "--verify", base + "^{commit}")
    touched = m.patched_files()
    with tempfile.TemporaryDirectory() as tmp:
        index = os.path.join(tmp, "index")
        ienv = dict(env, GIT_INDEX_FILE=index)
        git(git_dir, "read-tree", parent, env=ienv)
        for n, e in enumerate(m.entries):
            # Patches of later entries that change overlay files of this one.
            later = [p for later_entry in m.entries[n + 1:] for p in later_entry.files
                     if p.startswith("patches/")]
            for f in e.files:
                path = os.path.join(repo, f)
                if f.startswith("patches/"):
                    p = subprocess.run(
                        ["git", "apply", "--cached", "--whitespace=nowarn", path],
                        env=dict(os.environ, GIT_DIR=git_dir, GIT_INDEX_FILE=index),
                        capture_output=True, text=True)
                    if p.returncode:
                        raise SeriesError(patch_failure(f, p.stderr))
                    continue
                undo = [p for p in later if f in touched[p]]
                if undo:
                    path = earlier_version(repo, f, undo, tmp)
                blob = git(git_dir, "hash-object", "-w", "--", path)
                mode = "100755" if os.access(os.path.join(repo, f), os.X_OK) else "100644"
                git(git_dir, "update-index", "--add", "--cacheinfo", f"{mode},{blob},{f}",
                    env=ienv)
            tree = git(git_dir, "write-tree", env=ienv)
            parent = git(git_dir, "commit-tree", tree, "-p", parent, env=env,
                         input=e.message(ident))
        # The patches must rebuild the overlay files exactly as they are in the repository.
        for f in overlay_files(repo):
            want = git(git_dir, "hash-object", "--", os.path.join(repo, f))
            have = git(git_dir, "rev-parse", f"{parent}:{f}")
            if want != have:
                raise SeriesError(f"the series does not end with {f} as it is in the "
                                  "repository: check the patches that change it")
    return parent


def earlier_version(repo, name, patches, tmp):
    """The content of overlay file NAME before PATCHES (later entries' patches) change it."""
    work = os.path.join(tmp, "undo")
    subprocess.run(["rm", "-rf", work], check=True)
    os.makedirs(os.path.dirname(os.path.join(work, name)), exist_ok=True)
    with open(os.path.join(repo, name), "rb") as src, \
            open(os.path.join(work, name), "wb") as dst:
        dst.write(src.read())
    for patch in reversed(patches):
        p = subprocess.run(["git", "apply", "-R", f"--include={name}",
                            os.path.join(repo, patch)],
                           cwd=work, capture_output=True, text=True,
                           env=dict(os.environ, GIT_DIR=os.path.join(work, "no-git")))
        if p.returncode:
            raise SeriesError(f"cannot take {patch} back out of {name} to get its earlier "
                              f"version:\n{p.stderr.strip()}")
    return os.path.join(work, name)


def slug(subject):
    """A patch file name for a commit subject."""
    words = "".join(c if c.isalnum() else " " for c in subject.lower()).split()
    return "-".join(words)[:60].rstrip("-") + ".patch"


def export(repo, git_dir, base, tip):
    """Turn the commits BASE..TIP of the kernel tree into overlay files, patches and
    manifest entries in REPO, then check that assembling them gives the same trees."""
    old = Manifest(repo)
    names = {}
    for e in old.entries:
        for f in e.files:
            if f.startswith("patches/"):
                names.setdefault(e.subject, f)
                break
    commits = git(git_dir, "rev-list", "--reverse", "--no-merges", f"{base}..{tip}").split()
    if not commits:
        raise SeriesError(f"no commits between {base} and {tip}")
    if git(git_dir, "rev-list", "--merges", f"{base}..{tip}"):
        raise SeriesError("the series has merge commits; rebase it first")
    in_base = set(git(git_dir, "ls-tree", "-r", "--name-only", base).split("\n"))
    overlay_owner = {}
    entries = []
    used = set()
    for c in commits:
        message = git(git_dir, "log", "-1", "--format=%B", c)
        lines = [l for l in message.split("\n") if not l.startswith("Signed-off-by: ")]
        subject = lines[0].strip()
        body = "\n".join(lines[1:]).strip("\n")
        if not subject or not body:
            raise SeriesError(f"commit {c[:12]} needs a subject and a changelog")
        status = git(git_dir, "diff-tree", "-r", "--no-renames", "--no-commit-id",
                     "--name-status", f"{c}^", c)
        created, patched = [], []
        for line in status.split("\n"):
            if not line:
                continue
            st, path = line.split("\t", 1)
            overlay = path.split("/", 1)[0] in OVERLAY_ROOTS and path not in in_base
            if st == "A" and overlay and path not in overlay_owner:
                created.append(path)
                overlay_owner[path] = subject
            else:
                patched.append(path)
        files = []
        if patched:
            name = names.get(subject) or "patches/" + slug(subject)
            n = 2
            while name in used:
                name = f"patches/{slug(subject)[:-6]}-{n}.patch"
                n += 1
            used.add(name)
            diff = subprocess.run(
                ["git", "diff", "--no-renames", "--full-index", f"{c}^", c, "--", *patched],
                env=dict(os.environ, GIT_DIR=git_dir), check=True,
                capture_output=True).stdout
            with open(os.path.join(repo, name), "wb") as f:
                f.write(diff)
            files.append(name)
        files += created
        if not files:
            raise SeriesError(f"commit {c[:12]} ({subject}) changes nothing")
        entries.append((subject, files, body))

    # Overlay files: their content at the tip; those gone from the series go.
    final = set(overlay_owner)
    for f in overlay_files(repo):
        if f not in final:
            os.remove(os.path.join(repo, f))
    for f in final:
        data = subprocess.run(["git", "cat-file", "blob", f"{tip}:{f}"],
                              env=dict(os.environ, GIT_DIR=git_dir),
                              check=True, capture_output=True).stdout
        path = os.path.join(repo, f)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(data)
        mode = git(git_dir, "ls-tree", tip, "--", f).split()[0]
        os.chmod(path, 0o755 if mode == "100755" else 0o644)
    for f in os.listdir(os.path.join(repo, "patches")):
        if f.endswith(".patch") and f"patches/{f}" not in used:
            os.remove(os.path.join(repo, "patches", f))

    # The manifest: its header and cover letter as they were, then the entries.
    text = open(os.path.join(repo, MANIFEST), encoding="utf-8").read()
    head = text[:text.index("\n===") + 1] if "\n===" in text else text
    out = [head.rstrip("\n") + "\n"]
    for subject, files, body in entries:
        out.append(f"\n=== {subject}\nFiles:\n")
        out += [f"\t{f}\n" for f in files]
        out.append(f"\n{body}\n")
    with open(os.path.join(repo, MANIFEST), "w", encoding="utf-8") as f:
        f.write("".join(out))

    # Round trip: assembling the result must give the same trees.
    rebuilt = assemble(repo, git_dir, base)
    again = git(git_dir, "rev-list", "--reverse", f"{base}..{rebuilt}").split()
    if len(again) != len(commits):
        raise SeriesError("the exported series has a different number of commits")
    for a, b in zip(commits, again):
        if git(git_dir, "rev-parse", f"{a}^{{tree}}") != git(git_dir, "rev-parse", f"{b}^{{tree}}"):
            raise SeriesError(f"exported commit '{git(git_dir, 'log', '-1', '--format=%s', a)}'"
                              " does not rebuild the same tree")
    return rebuilt


def cover(repo):
    m = Manifest(repo)
    body = "\n".join(m.cover).strip("\n")
    subjects = "\n".join(f"  {e.subject}" for e in m.entries)
    return (f"Subject: {m.header.get('Cover-Subject', 'ASI')}\n\n{body}\n\n"
            f"Patches:\n{subjects}\n")


def main(argv):
    try:
        if len(argv) == 3 and argv[1] == "check":
            Manifest(argv[2]).check()
        elif len(argv) == 5 and argv[1] == "assemble":
            print(assemble(argv[2], argv[3], argv[4]))
        elif len(argv) == 6 and argv[1] == "export":
            print(export(argv[2], argv[3], argv[4], argv[5]))
        elif len(argv) == 3 and argv[1] == "cover":
            sys.stdout.write(cover(argv[2]))
        else:
            sys.stderr.write(__doc__)
            return 2
    except SeriesError as e:
        sys.stderr.write(f"asi: series: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
