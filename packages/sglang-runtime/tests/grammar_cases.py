"""Constraints for the structured-output tests: (prompt, regex) and (prompt, schema) pairs.

Every regex is written in the syntax both backends share (and Python's `re`), and is bounded, so
a greedy run must reach the end of its language within the token budget.
"""

from __future__ import annotations

from typing import Any

CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"

REGEX_CASES: list[tuple[str, str]] = [
    ("Call me at ", r"\(\d{3}\) \d{3}-\d{4}"),
    ("Our international office number is ", r"\+\d{1,3} \d{3} \d{3} \d{4}"),
    ("The meeting is on ", r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"),
    ("Date of birth (MM/DD/YYYY): ", r"(0[1-9]|1[0-2])/(0[1-9]|[12]\d|3[01])/(19|20)\d{2}"),
    ("The train leaves at ", r"([01]\d|2[0-3]):[0-5]\d"),
    ("The server's IP address is ",
     r"((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"),
    ("Write to John at ", r"[a-z]{1,10}\.[a-z]{1,10}@[a-z]{2,8}\.(com|org|net)"),
    ("My favourite colour is ", r"(red|green|blue|yellow)"),
    (CHAT.format("Is water wet? Answer Yes or No."), r"(Yes|No)"),
    (CHAT.format("What is the sentiment of 'I love it'?"), r"(positive|negative|neutral)"),
    ("The capital of France is ", r"[A-Z][a-z]{2,8}"),
    ("The number of days in a year is ", r"[1-9]\d{0,2}"),
    ("The book costs ", r"\$\d{1,4}\.\d{2}"),
    ("The background colour in hex is ", r"#[0-9a-fA-F]{6}"),
    ("The ZIP code of the White House is ", r"\d{5}(-\d{4})?"),
    ("The latest release is ", r"v\d\.\d{1,2}\.\d{1,2}"),
    ("The request id is ", r"[0-9a-f]{8}-[0-9a-f]{4}"),
    ("The author's full name is ", r"[A-Z][a-z]{1,10} [A-Z][a-z]{1,10}"),
    ("Three small numbers: ", r"\d{1,2}(, \d{1,2}){2}"),
    (CHAT.format("Which letter comes first: A, B, C or D?"), r"The answer is [A-D]\."),
    # "é" is two byte tokens in SmolLM2: the grammar's state (and its forced text) can sit in
    # the middle of a character.
    ("In French, summer is l'", r"(é|e)t(é|e)"),
]

_STR = {"type": "string", "maxLength": 16}

SCHEMA_CASES: list[tuple[str, dict[str, Any]]] = [
    ("Describe a person as JSON.", {
        "type": "object",
        "properties": {"name": _STR, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
        "required": ["name", "age"],
    }),
    ("Give a user account as JSON.", {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 999},
                               "email": {"type": "string", "maxLength": 24}},
                "required": ["id", "email"],
            },
            "active": {"type": "boolean"},
        },
        "required": ["user", "active"],
    }),
    ("List tags for a blog post about cooking as JSON.", {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string", "maxLength": 10},
                                "minItems": 1, "maxItems": 3}},
        "required": ["tags"],
    }),
    ("Give an order status as JSON.", {
        "type": "object",
        "properties": {"status": {"enum": ["pending", "shipped", "delivered"]},
                       "priority": {"enum": [1, 2, 3]}},
        "required": ["status", "priority"],
    }),
    ("Give a point on a small grid as JSON.", {
        "type": "object",
        "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 10},
                       "y": {"type": "integer", "minimum": -5, "maximum": 5}},
        "required": ["x", "y"],
    }),
    ("Describe a book as JSON.", {
        "type": "object",
        "properties": {"title": _STR, "subtitle": _STR,
                       "pages": {"type": "integer", "minimum": 1, "maximum": 999}},
        "required": ["title"],
    }),
    ("Give a shopping cart as JSON.", {
        "type": "object",
        "properties": {"items": {
            "type": "array", "minItems": 1, "maxItems": 2,
            "items": {"type": "object",
                      "properties": {"sku": {"type": "string", "maxLength": 8},
                                     "qty": {"type": "integer", "minimum": 1, "maximum": 9}},
                      "required": ["sku", "qty"]},
        }},
        "required": ["items"],
    }),
    ("Report the result of a health check as JSON.", {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "error": {"type": "null"}},
        "required": ["ok", "error"],
    }),
    ("Give a few digits as a JSON array.", {
        "type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9},
        "minItems": 2, "maxItems": 4,
    }),
    ("Give an invoice code as JSON.", {
        "type": "object",
        "properties": {"kind": {"const": "invoice"},
                       "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"}},
        "required": ["kind", "code"],
    }),
]

# Long fixed keys: most of the output is forced, so jump-forward skips most decode steps. The
# prompt settles every value: where it does not, the jumped run may differ from the stepped one
# after a jump, since a jump appends the tokenizer's own tokens for the forced text while greedy
# decoding under the mask may spell it with other tokens (SmolLM2 writes `{` `"` for `{"`).
LONG_KEYS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "customer_loyalty_membership_tier": {"enum": ["bronze", "silver", "gold", "platinum"]},
        "customer_is_subscribed_to_newsletter": {"type": "boolean"},
        "customer_preferred_contact_channel": {"enum": ["email", "phone", "sms"]},
        "customer_number_of_orders_last_year": {"type": "integer", "minimum": 0, "maximum": 99},
    },
    "required": ["customer_loyalty_membership_tier", "customer_is_subscribed_to_newsletter",
                 "customer_preferred_contact_channel", "customer_number_of_orders_last_year"],
}
LONG_KEYS_PROMPT = CHAT.format(
    "A gold member who is subscribed to the newsletter, prefers email and ordered 12 times last "
    "year. Give the customer record as JSON."
)
