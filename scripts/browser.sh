#!/usr/bin/env bash
# Makes the admin interface's browser tests runnable: Debian's chromium
# (/usr/bin/chromium) and playwright-core from the npm registry, pinned by
# crates/pbxgate/tests/browser/package-lock.json. Installs Debian packages
# when missing (as root). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=crates/pbxgate/tests/browser

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "browser.sh: missing ${need[*]}; run as root or: apt-get install ${need[*]}" >&2
        exit 1
    fi
    echo "browser.sh: installing ${need[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# npm ci only when the lock file changed since the last install.
stamp="$dir/node_modules/.pbxgate-lock"
if ! cmp -s "$dir/package-lock.json" "$stamp" 2>/dev/null; then
    echo "browser.sh: npm ci in $dir" >&2
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null
    cp "$dir/package-lock.json" "$stamp"
fi
echo "browser.sh: $(/usr/bin/chromium --version 2>/dev/null), playwright-core $(node -p "require('./$dir/node_modules/playwright-core/package.json').version")" >&2
