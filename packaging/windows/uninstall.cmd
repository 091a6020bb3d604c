@echo off
rem Removes the sitewatch site agent: its scheduled tasks, its firewall rules and its program folder.
rem The settings and logs in C:\ProgramData\sitewatch stay; to remove them too:  uninstall.cmd -Purge
rem Other parameters of install.ps1 pass through, e.g.  uninstall.cmd -InstallDir D:\sitewatch
rem
rem The install copies this file and install.ps1 into its program folder (C:\Program Files\sitewatch unless
rem -InstallDir said otherwise), so the agent can be removed without the bundle; run from there, the
rem script removes that very folder. That folder is deleted while this file runs: so the window first
rem leaves the folder, and everything from the PowerShell call on is one parenthesized block, which
rem cmd.exe reads whole before running it. This file is plain ASCII.
rem
rem As in install.cmd: the script's "downloaded from the internet" mark comes off first, and a Group
rem Policy that lets no unsigned script run (AllSigned, Restricted) is told in Russian, from the .NOTES
rem section of install.ps1's help. The path reaches PowerShell through the environment (SCRIPT).

setlocal EnableExtensions DisableDelayedExpansion
set "POWERSHELL=%SystemRoot%\System32\WindowsPowerShell\v1.0\powershell.exe"
if exist "%SystemRoot%\Sysnative\WindowsPowerShell\v1.0\powershell.exe" set "POWERSHELL=%SystemRoot%\Sysnative\WindowsPowerShell\v1.0\powershell.exe"
set "SCRIPT=%~dp0install.ps1"
call :detect_double_click "%~nx0"
"%POWERSHELL%" -NoProfile -NonInteractive -Command "Unblock-File -LiteralPath $env:SCRIPT -ErrorAction SilentlyContinue"
"%POWERSHELL%" -NoProfile -NonInteractive -ExecutionPolicy Bypass -Command "if ((Get-ExecutionPolicy) -in 'AllSigned', 'Restricted') { exit 3 }"
if errorlevel 3 goto policy_forced
cd /d "%SystemRoot%"
(
    "%POWERSHELL%" -NoProfile -ExecutionPolicy Bypass -File "%SCRIPT%" -Uninstall %*
    if errorlevel 1 (
        if defined PAUSE_AT_END pause
        exit /b 1
    )
    if defined PAUSE_AT_END pause
    exit /b 0
)

:policy_forced
"%POWERSHELL%" -NoProfile -NonInteractive -Command "$help = [IO.File]::ReadAllText($env:SCRIPT); if ($help -match '(?s)\.NOTES\s*\r?\n(.*?)\r?\n\s*\.[A-Z]') { Write-Host $Matches[1] -ForegroundColor Yellow }"
if defined PAUSE_AT_END pause
exit /b 1

:detect_double_click
rem Explorer starts a .cmd file as  cmd.exe /c ""C:\...\uninstall.cmd" " : the file's own name is in
rem CMDCMDLINE then, while in a console window someone typed it in, CMDCMDLINE is that console's.
set "PAUSE_AT_END="
if defined SITEWATCH_NO_PAUSE exit /b 0
setlocal EnableDelayedExpansion
set "LAUNCH=!CMDCMDLINE!"
set "WITHOUT_NAME=!LAUNCH:%~1=!"
if /i "!WITHOUT_NAME!"=="!LAUNCH!" (endlocal & exit /b 0)
endlocal & set "PAUSE_AT_END=1"
exit /b 0
