"""Attacks from issue 9, replayed against the real portal and LMTP receiver on both databases."""
