#!/usr/bin/env python3
"""Renders every chat template in Templates/ on every conversation of conversations.json with Python's jinja2, set up
as Hugging Face transformers sets it up for apply_chat_template, and writes the results as the expected fixtures of
ChatTemplateFixtureTests.

    python3 tests/Babel.UnitTests/Chat/make_fixtures.py        # rewrites tests/Babel.UnitTests/Chat/Expected/

Environment (transformers' chat_template_utils._compile_jinja_template): ImmutableSandboxedEnvironment with
trim_blocks=True, lstrip_blocks=True, the loopcontrols extension and the {% generation %} block; the globals raise_exception and strftime_now; the
tojson filter replaced by json.dumps(ensure_ascii=False, ...). The render call passes messages, tools (None without
tools), documents (None), add_generation_prompt and the tokenizer's special tokens (bos_token and eos_token, each only
when the model has it), then the conversation's own variables. strftime_now reads a fixed clock (FixedNow) so the
fixtures do not depend on the day they were made.

Output, per template T and conversation C: Expected/T/C.prompt.txt (add_generation_prompt=True) and
Expected/T/C.chat.txt (False), the exact UTF-8 text; when the template fails instead, the same name ending in
.error.txt holds "raise_exception: MESSAGE" for the template's own raise_exception, "TemplateSyntaxError: MESSAGE"
when it does not compile, or "TYPE: MESSAGE" for any other error. features.json holds small templates, one per Jinja
feature, rendered with their variables (and no others) in the same environment into Expected/features/NAME.txt
(or .error.txt).
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


class AssistantTracker(jinja2.ext.Extension):
    """transformers' {% generation %} ... {% endgeneration %} block, which renders its body (and, there, records where
    the assistant's text is)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, jinja2.ext.loopcontrols])
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
    return run(env, source, variables)


def run(env, source, variables):
    try:
        template = env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as e:
        return None, f"TemplateSyntaxError: {e.message}"
    except SyntaxError as e:  # what jinja2's generated Python refuses, e.g. 'break' outside a loop
        return None, f"TemplateSyntaxError: {e.msg}"
    try:
        return template.render(**variables), None
    except TemplateRaised as e:
        return None, f"raise_exception: {e.message}"
    except Exception as e:  # noqa: BLE001 - every failure is a fixture
        return None, f"{type(e).__name__}: {e}"


def write(folder, stem, text, error):
    name = stem + (".txt" if error is None else ".error.txt")
    with open(os.path.join(folder, name), "w", encoding="utf-8", newline="") as f:
        f.write(text if error is None else error)


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
                write(folder, f"{conversation['name']}.{kind}", text, error)
                counts["renders" if error is None else "errors"] += 1
    with open(os.path.join(HERE, "features.json"), encoding="utf-8") as f:
        features = json.load(f)
    folder = os.path.join(expected, "features")
    os.makedirs(folder)
    for feature in features:
        text, error = run(env, feature["template"], feature["variables"])
        write(folder, feature["name"], text, error)
        counts["renders" if error is None else "errors"] += 1
    print(f"jinja2 {jinja2.__version__}: {counts['renders']} renders and {counts['errors']} errors written to {expected}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
