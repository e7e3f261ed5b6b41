#!/usr/bin/env python3
"""Renders every chat template in Templates/ on every conversation of conversations.json with Python's jinja2, set up
as Hugging Face transformers sets it up for apply_chat_template, and writes the results as the expected fixtures of
ChatTemplateFixtureTests.

    python3 tests/Babel.UnitTests/Chat/make_fixtures.py        # rewrites tests/Babel.UnitTests/Chat/Expected/

Environment (transformers' chat_template_utils._compile_jinja_template): ImmutableSandboxedEnvironment with
trim_blocks=True, lstrip_blocks=True and the loopcontrols extension; the globals raise_exception and strftime_now; the
tojson filter replaced by json.dumps(ensure_ascii=False, ...). The render call passes messages, tools (None without
tools), documents (None), add_generation_prompt and the tokenizer's special tokens (bos_token and eos_token, each only
when the model has it), then the conversation's own variables. strftime_now reads a fixed clock (FixedNow) so the
fixtures do not depend on the day they were made.

Output, per template T and conversation C: Expected/T/C.prompt.txt (add_generation_prompt=True) and
Expected/T/C.chat.txt (False), the exact UTF-8 text; when the template fails instead, the same name ending in
.error.txt holds "raise_exception: MESSAGE" for the template's own raise_exception, or "TYPE: MESSAGE" for any
other error.
"""
import json
import os
import shutil
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
FIXED_NOW = datetime(2024, 9, 5, 14, 3, 9)


class TemplateRaised(jinja2.exceptions.TemplateError):
    """What the template's raise_exception throws (transformers raises a plain TemplateError)."""


def raise_exception(message):
    raise TemplateRaised(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers' replacement for jinja's tojson: no HTML escaping, and json.dumps' options.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return FIXED_NOW.strftime(format)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, source, template, conversation, tool_sets, add_generation_prompt):
    variables = {
        "messages": conversation["messages"],
        "tools": tool_sets[conversation["tools"]] if "tools" in conversation else None,
        "documents": None,
        "add_generation_prompt": add_generation_prompt,
    }
    for token in ("bos_token", "eos_token"):
        if template.get(token) is not None:
            variables[token] = template[token]
    variables.update(conversation.get("variables", {}))
    try:
        return env.from_string(source).render(**variables), None
    except TemplateRaised as e:
        return None, f"raise_exception: {e.message}"
    except Exception as e:  # noqa: BLE001 - every failure is a fixture
        return None, f"{type(e).__name__}: {e}"


def main():
    with open(os.path.join(HERE, "conversations.json"), encoding="utf-8") as f:
        inputs = json.load(f)
    with open(os.path.join(HERE, "Templates", "templates.json"), encoding="utf-8") as f:
        templates = json.load(f)
    expected = os.path.join(HERE, "Expected")
    shutil.rmtree(expected, ignore_errors=True)
    env = environment()
    counts = {"renders": 0, "errors": 0}
    for template in templates:
        with open(os.path.join(HERE, "Templates", template["name"] + ".jinja"), encoding="utf-8", newline="") as f:
            source = f.read()
        folder = os.path.join(expected, template["name"])
        os.makedirs(folder)
        for conversation in inputs["conversations"]:
            for add_generation_prompt, kind in ((True, "prompt"), (False, "chat")):
                text, error = render(env, source, template, conversation, inputs["tools"], add_generation_prompt)
                name = f"{conversation['name']}.{kind}" + (".txt" if error is None else ".error.txt")
                with open(os.path.join(folder, name), "w", encoding="utf-8", newline="") as f:
                    f.write(text if error is None else error)
                counts["renders" if error is None else "errors"] += 1
    print(f"jinja2 {jinja2.__version__}: {counts['renders']} renders and {counts['errors']} errors written to {expected}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
