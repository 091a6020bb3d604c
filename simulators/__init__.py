"""Stand-ins for the devices and servers sitewatch watches, speaking their real protocols on loopback.

Tests and `make demo` use them; they are not part of the installed programs.
"""
