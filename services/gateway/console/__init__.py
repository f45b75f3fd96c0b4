"""The caseworkers' console: server-rendered pages over the agency's inbox, and forms that
publish the agency's messages (issue 20; docs/console.md)."""
