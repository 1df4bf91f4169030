"""``python -m mdtp.node.testing ARGS``: the ``mdtp`` command with the test switches of the
environment (``MDTP_TEST_*``) installed. The cluster launcher uses it only when such a switch
is set; production nodes run ``mdtp`` itself, which cannot load any of this."""

import sys

from mdtp.node.cli import main
from mdtp.node.testing.hooks import hooks_from_env

sys.exit(main(sys.argv[1:], hooks=hooks_from_env()))
