"""Who is calling and what they may do: tokens, roles and scopes, sign-in sessions (no web or database code)."""
