"""The README's generated parts match the code."""
import os
import re

from sslcore.docs import methods_table

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_methods_table_is_in_sync_with_the_registry():
    text = open(README).read()
    block = re.search(r"<!-- methods-table:start.*?-->\n(.*?)\n<!-- methods-table:end -->", text, re.S)
    assert block, "README lost its methods table markers"
    assert block.group(1).strip() == methods_table().strip(), "run: python -m sslcore.docs and paste into README"
