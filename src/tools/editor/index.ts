export { createEditorTool, editorTool, type EditorInput, type EditorToolOptions } from './editor-tool.js';
