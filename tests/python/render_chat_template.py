"""Renders a chat template as Hugging Face's apply_chat_template does (Jinja2, sandboxed,
trim_blocks and lstrip_blocks, raise_exception), for issue #19's Ollama test.
Usage: python3 render_chat_template.py TEMPLATE_FILE MESSAGES.json BOS EOS"""

import json
import sys

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise TemplateError(message)


template_file, messages_file, bos, eos = sys.argv[1:5]
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
env.globals["raise_exception"] = raise_exception
template = env.from_string(open(template_file, encoding="utf-8").read())
messages = json.load(open(messages_file, encoding="utf-8"))
sys.stdout.write(
    template.render(messages=messages, add_generation_prompt=True, bos_token=bos, eos_token=eos)
)
