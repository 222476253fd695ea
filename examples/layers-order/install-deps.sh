# Stands in for npm ci / pip install: slow, and depends only on deps.txt.
sleep 3
mkdir -p /deps
while read -r dep; do echo "installed $dep" >"/deps/$dep"; done <deps.txt
