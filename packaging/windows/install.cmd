@echo off
rem Installs the sitewatch site agent from the unpacked bundle this file is in, or upgrades it.
rem Double-click it, or run it from cmd.exe with the parameters of install.ps1, for example
rem   install.cmd -Mode Pusher -Config D:\shop-12\site.yml
rem   install.cmd -Mode Exporter -AllowFrom 10.8.0.1
rem install.ps1 beside this file does the work; its help, in Russian:
rem   powershell -NoProfile -ExecutionPolicy Bypass -Command "Get-Help .\install.ps1 -Full"
rem -ExecutionPolicy Bypass applies to this one run only: the machine's policy stays as it is.
rem Started by a double-click, the window waits for a key at the end, so its last lines can be read
rem (set SITEWATCH_NO_PAUSE=1 to skip that). This file is plain ASCII: cmd.exe reads it in the OEM code page.
rem
rem Before the script runs, two things a command line can do and the script itself cannot:
rem  - the "downloaded from the internet" mark comes off the bundle's files (this folder's own files,
rem    wheels and examples; not whatever else shares the folder): a Group Policy that sets RemoteSigned
rem    overrides -ExecutionPolicy Bypass, and under it a marked script does not run at all;
rem  - a Group Policy that sets AllSigned or Restricted lets no unsigned script run, whatever the command
rem    line says. Then the Russian explanation in the .NOTES section of install.ps1's help is shown
rem    (reading a file is allowed under any policy) instead of PowerShell's own error.
rem The folder reaches PowerShell through the environment, not inside its command text, so a quote in a
rem folder name, or the trailing backslash of %~dp0, cannot break the command.

setlocal EnableExtensions DisableDelayedExpansion
set "POWERSHELL=%SystemRoot%\System32\WindowsPowerShell\v1.0\powershell.exe"
rem A 32-bit cmd.exe would start the 32-bit PowerShell; Sysnative is the 64-bit System32 as it sees it.
if exist "%SystemRoot%\Sysnative\WindowsPowerShell\v1.0\powershell.exe" set "POWERSHELL=%SystemRoot%\Sysnative\WindowsPowerShell\v1.0\powershell.exe"
set "SITEWATCH_BUNDLE=%~dp0."
set "SITEWATCH_SCRIPT=%~dp0install.ps1"

call :detect_double_click "%~nx0"
"%POWERSHELL%" -NoProfile -NonInteractive -Command "$root = $env:SITEWATCH_BUNDLE; $files = @(Get-ChildItem -LiteralPath $root -File); foreach ($name in 'wheels', 'examples') { $folder = Join-Path $root $name; if (Test-Path -LiteralPath $folder) { $files += @(Get-ChildItem -LiteralPath $folder -Recurse -File) } }; $files | Unblock-File -ErrorAction SilentlyContinue"
"%POWERSHELL%" -NoProfile -NonInteractive -ExecutionPolicy Bypass -Command "if ((Get-ExecutionPolicy) -in 'AllSigned', 'Restricted') { exit 3 }"
if errorlevel 3 goto policy_forced
"%POWERSHELL%" -NoProfile -ExecutionPolicy Bypass -File "%~dp0install.ps1" %*
set "RESULT=%ERRORLEVEL%"
if defined PAUSE_AT_END pause
exit /b %RESULT%

:policy_forced
"%POWERSHELL%" -NoProfile -NonInteractive -Command "$help = [IO.File]::ReadAllText($env:SITEWATCH_SCRIPT); if ($help -match '(?s)\.NOTES\s*\r?\n(.*?)\r?\n\s*\.[A-Z]') { Write-Host $Matches[1] -ForegroundColor Yellow }"
if defined PAUSE_AT_END pause
exit /b 1

:detect_double_click
rem Explorer starts a .cmd file as  cmd.exe /c ""C:\...\install.cmd" " : the file's own name is in
rem CMDCMDLINE then, while in a console window someone typed it in, CMDCMDLINE is that console's.
set "PAUSE_AT_END="
if defined SITEWATCH_NO_PAUSE exit /b 0
setlocal EnableDelayedExpansion
set "LAUNCH=!CMDCMDLINE!"
set "WITHOUT_NAME=!LAUNCH:%~1=!"
if /i "!WITHOUT_NAME!"=="!LAUNCH!" (endlocal & exit /b 0)
endlocal & set "PAUSE_AT_END=1"
exit /b 0
