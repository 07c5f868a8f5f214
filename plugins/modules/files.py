#!/usr/bin/python
# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Many directories and small files in one module call: one round trip where a loop of file/copy takes one an item."""

from __future__ import annotations

DOCUMENTATION = r"""
module: files
short_description: Directories and files with given content, many in one call
version_added: 0.1.0
description:
  - Makes sure each directory exists and each file holds exactly the given content, with the given mode, owner and
    group, in one module call. The roles use it where a loop of M(ansible.builtin.file) or M(ansible.builtin.copy)
    would cost one connection round trip an item.
  - Files are replaced atomically (a temporary file in the same directory, created readable by root only, checked
    by C(validate) where given, then renamed); directories first, then files in the order given, then removals.
  - A file whose check fails is not written and fails the task, naming the file and the checker's output; files
    written before it in the same call stay written.
attributes:
  check_mode:
    support: full
    description: Reports what would change and changes nothing.
  diff_mode:
    support: full
    description: One diff a changed file or directory (contents of files whose C(diff) is true).
options:
  directories:
    description: Directories that must exist.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The directory.
        type: path
        required: true
      mode:
        description: Its mode, as for M(ansible.builtin.file).
        type: raw
      owner:
        description: Its owner.
        type: str
      group:
        description: Its group.
        type: str
  files:
    description: Files that must hold C(content).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file.
        type: path
        required: true
      content:
        description: What it holds (text, written as UTF-8).
        type: str
        required: true
      mode:
        description: Its mode, as for M(ansible.builtin.file).
        type: raw
      owner:
        description: Its owner.
        type: str
      group:
        description: Its group.
        type: str
      trim:
        description: Strip white space from both ends of C(content) and end it with one newline (PEM text from
          variables, whose trailing newlines vary).
        type: bool
        default: false
      force:
        description: Replace a file that exists with other content; false writes it only when it is missing.
        type: bool
        default: true
      diff:
        description: Show the contents in diffs; false shows only that the file changed (for keys and tokens).
        type: bool
        default: true
      validate:
        description:
          - A command that checks the new content before it replaces the file; C(%s) is the path of the new
            content, a file with the same name as the target in a temporary directory beside it (checkers such as
            C(systemd-analyze verify) look at the name). Run without a shell, split as a shell would.
        type: str
  absent:
    description: Files (not directories) that must not exist; removed after the directories and files are written.
    type: list
    elements: path
    default: []
  prune:
    description: Directories whose files matching C(pattern) are removed unless they are among O(files).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The directory (a missing one has nothing to remove).
        type: path
        required: true
      pattern:
        description: A shell glob of file names in it, for example C(*-check.pem).
        type: str
        required: true
      keep:
        description: File names in it to keep as well (files another call writes).
        type: list
        elements: str
        default: []
author:
  - k8router.edge maintainers (@k8router)
"""

EXAMPLES = r"""
- name: The CNI directory and its two files, in one call
  k8router.edge.files:
    directories:
      - {path: /etc/cni/net.d, mode: "0755", owner: root, group: root}
    files:
      - {path: /etc/cni/net.d/10-calico.conflist, content: "{{ conflist }}", mode: "0644"}
      - {path: /etc/cni/net.d/calico-kubeconfig, content: "{{ kubeconfig }}", mode: "0600", diff: false}
"""

RETURN = r"""
changed_paths:
  description: The directories and files that changed (or would, in check mode), in the order given.
  returned: always
  type: list
  elements: str
"""

import fnmatch
import os
import shlex
import shutil
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule

ATTRS = {"mode": {"type": "raw"}, "owner": {"type": "str"}, "group": {"type": "str"}}
ARGS: dict[str, Any] = {
    "directories": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {"path": {"type": "path", "required": True}, **ATTRS},
    },
    "absent": {"type": "list", "elements": "path", "default": []},
    "prune": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "path": {"type": "path", "required": True},
            "pattern": {"type": "str", "required": True},
            "keep": {"type": "list", "elements": "str", "default": []},
        },
    },
    "files": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "path": {"type": "path", "required": True},
            "content": {"type": "str", "required": True},
            "trim": {"type": "bool", "default": False},
            "force": {"type": "bool", "default": True},
            "diff": {"type": "bool", "default": True},
            "validate": {"type": "str"},
            **ATTRS,
        },
    },
}


def _attributes(module: AnsibleModule, item: dict[str, Any], path: str) -> bool:
    """Mode, owner and group of an existing ``path`` set as ``item`` says; whether that changes anything."""
    args = module.load_file_common_arguments({"path": path, **{k: item.get(k) for k in ATTRS}})
    return bool(module.set_fs_attributes_if_different(args, False))


def _directory(module: AnsibleModule, item: dict[str, Any]) -> tuple[bool, dict[str, str] | None]:
    path = item["path"]
    if os.path.isdir(path):
        return _attributes(module, item, path), None
    if os.path.lexists(path):
        module.fail_json(msg=f"{path} exists and is not a directory")
    if not module.check_mode:
        os.makedirs(path)
        _attributes(module, item, path)
    return True, {"before_header": path, "after_header": path, "before": "(absent)\n", "after": "(directory)\n"}


def _file(module: AnsibleModule, item: dict[str, Any]) -> tuple[bool, dict[str, str] | None]:
    content = item["content"].strip() + "\n" if item["trim"] else item["content"]
    path, data = item["path"], content.encode()
    exists = os.path.lexists(path)
    if exists and not item["force"]:
        return False, None
    if exists and not os.path.isfile(path):
        module.fail_json(msg=f"{path} exists and is not a regular file")
    before = b""
    if exists:
        with open(path, "rb") as handle:
            before = handle.read()
    diff = None
    if before != data or not exists:
        shown = item["diff"]
        diff = {
            "before_header": path,
            "after_header": path,
            "before": before.decode(errors="replace") if shown and exists else ("(absent)\n" if not exists else ""),
            "after": data.decode(errors="replace") if shown else "(content not shown)\n",
        }
        if not module.check_mode:
            _write(module, path, data, item["validate"])
    attrs_changed = _attributes(module, item, path) if exists or not module.check_mode else False
    return diff is not None or attrs_changed, diff


def _write(module: AnsibleModule, path: str, data: bytes, validate: str | None) -> None:
    """``data`` into ``path`` by a rename, after ``validate`` passed on it under the same file name."""
    stage = tempfile.mkdtemp(prefix=".k8router-", dir=os.path.dirname(path) or ".")  # mode 0700
    try:
        new = os.path.join(stage, os.path.basename(path))
        with open(os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.write(data)
        if validate:
            if "%s" not in validate:
                module.fail_json(msg=f"{path}: validate must name the new content as %s: {validate!r}")
            argv = [word.replace("%s", new) for word in shlex.split(validate)]
            rc, out_text, err_text = module.run_command(argv)
            if rc != 0:
                shown = (err_text.strip() or out_text.strip()).replace(new, path)
                failed = f"{path}: the new content failed {argv[0]} (rc {rc}), the file is unchanged"
                module.fail_json(msg=f"{failed}: {shown}")
        module.atomic_move(new, path, unsafe_writes=False)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _pruned(params: dict[str, Any]) -> list[str]:
    """The files of the prune directories that match their pattern and are not among the call's files."""
    kept = {os.path.normpath(f["path"]) for f in params["files"]}
    found: list[str] = []
    for rule in params["prune"]:
        if not os.path.isdir(rule["path"]):
            continue
        for name in sorted(os.listdir(rule["path"])):
            candidate = os.path.normpath(os.path.join(rule["path"], name))
            listed = candidate in kept or name in rule["keep"]
            if fnmatch.fnmatchcase(name, rule["pattern"]) and not listed and not os.path.isdir(candidate):
                found.append(candidate)
    return found


def _absent(module: AnsibleModule, path: str) -> tuple[bool, dict[str, str] | None]:
    if not os.path.lexists(path):
        return False, None
    if os.path.isdir(path) and not os.path.islink(path):
        module.fail_json(msg=f"{path} is a directory; absent removes files only")
    if not module.check_mode:
        os.unlink(path)
    return True, {"before_header": path, "after_header": path, "before": "(file)\n", "after": "(absent)\n"}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGS, supports_check_mode=True)
    changed_paths: list[str] = []
    diffs: list[dict[str, str]] = []
    for kind, handler in (("directories", _directory), ("files", _file)):
        for item in module.params[kind]:
            changed, diff = handler(module, item)
            if changed:
                changed_paths.append(item["path"])
            if diff is not None:
                diffs.append(diff)
    for path in module.params["absent"] + _pruned(module.params):
        changed, diff = _absent(module, path)
        if changed:
            changed_paths.append(path)
        if diff is not None:
            diffs.append(diff)
    result: dict[str, Any] = {"changed": bool(changed_paths), "changed_paths": changed_paths}
    if module._diff and diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
