@echo off
rem sitewatch-pusher for Windows Task Scheduler: one run of the site's checks, one push to the
rem Pushgateway, and the verdict appended to a log file. See docs\pusher.md.
rem
rem schtasks cannot set a task's "Start in" folder, so a task that runs sitewatch-pusher.exe directly
rem starts in C:\Windows\System32 and has nowhere sensible to write. This wrapper goes to the config
rem folder first, runs the pusher with --once, and appends each site's verdict line with the date:
rem
rem   22.11.2026 12:15:01 shop-12: pushed 23 series to https://pgw.example.ru:9091 in 41 ms
rem   22.11.2026 12:30:02 shop-12: NOT pushed after 6 attempts: refused: connection refused by ...
rem
rem to logs\pusher-task.log. The latest run's lines alone are in logs\pusher-task-last.txt, and its log
rem lines (failed checks, a config error) in logs\pusher-task-stderr.txt; both are overwritten each run. The exit status is the pusher's, so the
rem task's "Last Run Result" shows 0x0 (pushed), 0x1 (a push failed) or 0x2 (config or usage error).
rem
rem Install (cmd.exe as Administrator; sitewatch installed in C:\Program Files\sitewatch\venv, the config
rem in C:\ProgramData\sitewatch\site.yml, as the install script sets them up):
rem
rem   copy examples\windows\pusher-task.cmd "C:\Program Files\sitewatch\"
rem   "C:\Program Files\sitewatch\pusher-task.cmd"
rem   type C:\ProgramData\sitewatch\logs\pusher-task.log
rem   schtasks /Create /TN "sitewatch-pusher" /TR "\"C:\Program Files\sitewatch\pusher-task.cmd\"" /SC MINUTE /MO 15 /RU SYSTEM /RL HIGHEST /F
rem   schtasks /Run /TN "sitewatch-pusher"
rem
rem /RU SYSTEM is "Run whether user is logged on or not" (no console window on the user's screen), /RL
rem HIGHEST "Run with highest privileges" (ping checks need it). Keep this file in Program Files, where
rem only administrators may change it: the task runs it as SYSTEM. Extra arguments are passed on to the
rem pusher, e.g.  pusher-task.cmd --site shop-12

setlocal
set "SITEWATCH_DIR=C:\ProgramData\sitewatch"
set "PUSHER=C:\Program Files\sitewatch\venv\Scripts\sitewatch-pusher.exe"
set "LOG=logs\pusher-task.log"
set "LAST=logs\pusher-task-last.txt"
set "STDERR=logs\pusher-task-stderr.txt"

cd /d "%SITEWATCH_DIR%" || exit /b 2
if not exist logs mkdir logs

"%PUSHER%" --config site.yml --once %* > "%LAST%" 2> "%STDERR%"
set "RC=%ERRORLEVEL%"

set "STAMP=%DATE% %TIME:~0,8%"
for /f "usebackq delims=" %%L in ("%LAST%") do >> "%LOG%" echo %STAMP% %%L
rem No verdict line (a config error, exit status 2): say so, and where to read why.
for %%A in ("%LAST%") do if %%~zA equ 0 >> "%LOG%" echo %STAMP% no verdict, exit status %RC%: see %SITEWATCH_DIR%\%STDERR%
exit /b %RC%
